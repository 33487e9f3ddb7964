#!/usr/bin/env bash
# The README's Slurm job for real, on a one-node cluster on localhost (run by .ci/run): the
# job array of deploy/slurm/score.sbatch scores a few hundred pairs in 3 shards with a tiny
# fixture model, the dependent merge job of deploy/slurm/merge.sbatch joins them, and the
# merged output is checked against a single-process run of the same input.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
if [ -d "$repo/../shared/fixtures" ]; then shared=$(cd "$repo/../shared" && pwd); else shared="$repo/shared"; fi
bin="$repo/target/release/epitome"
cargo build --release --quiet

deploy/slurm/local-cluster.sh

work=$(mktemp -d /tmp/epitome-slurm.XXXXXX)
export EPITOME_HOME="$work/home" EPITOME_LOG=warn
"$bin" train --data "$shared/data/epitome-reddit" --encoder "$shared/fixtures/tiny-roberta" \
    --epochs 1 --batch-size 8 --limit 24 --out "$work/model" >/dev/null 2>&1
# 300 pairs of the shared data, seeker posts repeated as in a thread.
python3 - "$shared/data/epitome-reddit/emotional-reactions-reddit.csv" "$work/pairs.csv" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1], encoding="utf-8")))
with open(sys.argv[2], "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)
    w.writerow(["id", "seeker_post", "response_post"])
    for i in range(300):
        w.writerow([f"r{i}", rows[i // 3]["seeker_post"], rows[i]["response_post"]])
EOF
"$bin" predict --model "$work/model" --input "$work/pairs.csv" --output "$work/single.jsonl"

cd "$work"
export EPITOME_BIN="$bin" EPITOME_MODEL="$work/model"
array=$(sbatch --parsable --array=0-2 --export=ALL "$repo/deploy/slurm/score.sbatch" pairs.csv parts)
sbatch --parsable --wait --dependency="afterok:$array" --export=ALL \
    "$repo/deploy/slurm/merge.sbatch" pairs.csv parts merged.jsonl >/dev/null
# Each shard was written by its own array task (Slurm names the task's log after it).
for task in 0 1 2; do
    if [ ! -e "epitome-score-${array}_$task.log" ] || [ ! -s "parts/part-$task.jsonl" ]; then
        echo "array task $task of job $array did not run or wrote nothing:" >&2
        cat epitome-score-*.log >&2 || true
        exit 1
    fi
done

python3 - single.jsonl merged.jsonl parts/part-*.jsonl <<'EOF'
import json, sys
single, merged, parts = sys.argv[1], sys.argv[2], sys.argv[3:]
load = lambda p: [json.loads(l) for l in open(p, encoding="utf-8") if l.strip()]
a, b = load(single), load(merged)
assert [r["id"] for r in a] == [r["id"] for r in b], "merged ids are not the input's, in order"
ids = [r["id"] for p in parts for r in load(p)]
assert sorted(ids) == sorted(r["id"] for r in a), "the shards overlap or miss rows"
for x, y in zip(a, b):
    for m in ["ER", "IP", "EX"]:
        assert x[m]["level"] == y[m]["level"], (x["id"], m)
        assert x[m]["rationales"] == y[m]["rationales"], (x["id"], m)
        # A pair is batched with other pairs in a shard than in one run; sums over a
        # batch's padded length round differently.
        assert all(abs(p - q) < 1e-5 for p, q in zip(x[m]["probs"], y[m]["probs"])), (x["id"], m)
    assert x["truncated"] == y["truncated"]
print(f"slurm: 3 array tasks and a merge job scored {len(b)} pairs, equal to one process")
EOF
cd "$repo"
deploy/slurm/local-cluster.sh stop
rm -rf "$work"
