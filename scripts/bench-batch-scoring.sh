#!/usr/bin/env bash
# Batch scoring of whole platforms (issue 11, docs/PERFORMANCE.md): `epitome predict` on the
# shared posts recombined to N real-length pairs, wall time and peak RSS by GNU time, with the
# shipped model and with the tiny fixture model (whose encoders cost almost nothing, so that
# the pipeline's own costs show: reading, tokenizing, the seeker cache, writing, checkpoints);
# then the PyTorch peer (../shared/peer/torch_bench.py) right after, on the same machine.
#
#   scripts/bench-batch-scoring.sh OUT_DIR [REAL_SIZES] [TINY_SIZES]
#
# Defaults: REAL_SIZES="1000 10000", TINY_SIZES="1000 10000 100000 1000000" ("" skips a
# part; the peer runs only after real-model runs, the bookkeeping runs only with tiny sizes);
# PRECISIONS="f32" (the shipped model is run at each of them, e.g. PRECISIONS="f32 int8"). The resume
# bookkeeping (working file, checkpoint after every 256 pairs) is measured with the tiny model
# against the same run to stdout, where no checkpoint is written: its share of the time is
# largest there.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bench-batch-scoring.sh OUT_DIR [REAL_SIZES] [TINY_SIZES]}
real_sizes=${2-1000 10000}
tiny_sizes=${3-1000 10000 100000 1000000}
py=${PEER_PYTHON:-$HOME/torchpeer/bin/python}
data=../shared/data/epitome-reddit
mkdir -p "$out"
out=$(cd "$out" && pwd)
cargo build --release --quiet
bin=$(pwd)/target/release/epitome
export EPITOME_LOG=warn
encoder=$("$bin" encoder fetch 2>/dev/null | tail -1)
lscpu > "$out/lscpu.txt"

tiny="$out/tiny-model"
[ -e "$tiny/bundle.json" ] || "$bin" train --data "$data" --encoder ../shared/fixtures/tiny-roberta \
    --epochs 1 --batch-size 8 --limit 24 --out "$tiny" >/dev/null 2>&1

run() { # model size label extra-args...
    local model=$1 n=$2 label=$3; shift 3
    local input="$out/pairs-$n.csv"
    [ -e "$input" ] || python3 scripts/recombine-pairs.py "$data" "$n" "$input"
    rm -f "$out/out-$label-$n.jsonl"
    /usr/bin/time -f '%e %M' -o "$out/time.txt" "$bin" predict --model "$model" --input "$input" "$@" >/dev/null
    read -r wall rss < "$out/time.txt"
    echo "{\"label\": \"$label\", \"pairs\": $n, \"wall_s\": $wall, \"rss_kb\": $rss}" | tee -a "$out/runs.jsonl"
}

if [ -n "$real_sizes" ]; then
    for p in ${PRECISIONS:-f32}; do
        for n in $real_sizes; do
            run default "$n" "shipped-$p" --precision "$p" --output "$out/out-shipped-$p-$n.jsonl"
        done
    done
    echo "== PyTorch peer" >&2
    "$py" ../shared/peer/torch_bench.py --encoder "$encoder" --threads 2 2>/dev/null | tail -1 > "$out/torch.json"
    cat "$out/torch.json"
fi
for n in $tiny_sizes; do run "$tiny" "$n" tiny --output "$out/out-tiny-$n.jsonl"; done
# Bookkeeping: the same 100k-pair run to a file (checkpointed) and to stdout, alternated.
if [ -n "$tiny_sizes" ]; then
    for i in 1 2 3; do
        run "$tiny" 100000 tiny-file --output "$out/out-tiny-file-100000.jsonl"
        run "$tiny" 100000 tiny-stdout
    done
fi
rm -f "$out"/out-*.jsonl "$out"/pairs-*.csv
