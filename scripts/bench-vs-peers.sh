#!/usr/bin/env bash
# epitome's benchmark, then the PyTorch and ONNX Runtime peers, one after the other on this
# machine, and the ratios of the engine goals (docs/PERFORMANCE.md). Absolute figures do not
# carry from one host to the next; ratios measured side by side do.
#
#   scripts/bench-vs-peers.sh [--rounds N] [--train] [--out DIR]
#
# Shared hosts change speed by 20-50% within minutes (another guest's load), so one triple can
# put a peer in a slow minute and epitome in a fast one. --rounds N (default 3) runs the triple
# N times, interleaved, and reports each round's ratios and their median.
#
# Needs the peers' virtual environment (../shared/peer/*.py docstrings):
#   python3 -m venv ~/torchpeer && ~/torchpeer/bin/pip install torch transformers onnxruntime onnx onnxscript
# PEER_PYTHON overrides its interpreter. --train also measures the peak memory of a full
# default `epitome train` on ../shared/data/epitome-reddit (about 15 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

train=false
rounds=3
out=$(mktemp -d)
while [ $# -gt 0 ]; do
    case "$1" in
        --train) train=true ;;
        --rounds) rounds="$2"; shift ;;
        --out) out="$2"; shift ;;
        *) echo "usage: $0 [--rounds N] [--train] [--out DIR]" >&2; exit 2 ;;
    esac
    shift
done
mkdir -p "$out"
py=${PEER_PYTHON:-$HOME/torchpeer/bin/python}
threads=${THREADS:-2}
data=../shared/data/epitome-reddit

cargo build --release --quiet
bin=target/release/epitome
encoder=$("$bin" encoder fetch 2>/dev/null | tail -1)
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }

lscpu > "$out/lscpu.txt"
for r in $(seq 1 "$rounds"); do
    echo "== round $r of $rounds: epitome bench" >&2
    RAYON_NUM_THREADS=$threads "$bin" bench --iters 6 --json "$out/epitome-$r.json" >/dev/null
    echo "== round $r of $rounds: PyTorch peer" >&2
    "$py" ../shared/peer/torch_bench.py --encoder "$encoder" --threads "$threads" 2>/dev/null | tail -1 > "$out/torch-$r.json"
    echo "== round $r of $rounds: ONNX Runtime peer" >&2
    "$py" ../shared/peer/ort_bench.py --encoder "$encoder" --threads "$threads" 2>/dev/null | tail -1 > "$out/ort-$r.json"
done

# Peak memory of the commands themselves, as a user runs them.
model=${EPITOME_BENCH_MODEL:-}
if [ -z "$model" ]; then
    model="$out/model"
    echo "== a small model for predict's memory (train --limit 200 --epochs 1)" >&2
    "$bin" train --data "$data" --out "$model" --limit 200 --epochs 1 2>/dev/null
fi
echo "== predict's memory" >&2
/usr/bin/time -f '%M' -o "$out/predict.rss" "$bin" predict --model "$model" \
    --input "$data/emotional-reactions-reddit.csv" --output "$out/predictions.jsonl" 2>/dev/null
if $train; then
    echo "== train's memory (full default run)" >&2
    /usr/bin/time -f '%M %e' -o "$out/train.rss" "$bin" train --data "$data" --out "$out/model-full" 2>/dev/null
fi

"$py" - "$out" "$rounds" <<'PY'
import json, os, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def load(name, r):
    return json.load(open(f"{out}/{name}-{r}.json"))
runs = [(load("epitome", r), load("torch", r), load("ort", r)) for r in range(1, rounds + 1)]
def rss(name):
    p = f"{out}/{name}.rss"
    return int(open(p).read().split()[0]) / 1024 if os.path.exists(p) else None
def rows(e, t, o):
    return [
        ("encoder forward 32x64, seq/s", e["encoder_forward_seq_per_s"], t["encoder_forward_seq_per_s"], o["ort_fp32_forward_seq_per_s"]),
        ("one 64-token sequence, ms", e["encoder_forward_one_sequence_ms"], None, o["ort_fp32_batch1_ms"]),
        ("one pair, three mechanisms, ms", e["pipeline_one_pair_ms"], 1000 / t["original_pipeline_pairs_per_s"], 2 * o["ort_fp32_batch1_ms"]),
        ("batch 32, three mechanisms, pairs/s", e["batched_pipeline_pairs_per_s"], t["batched_pipeline_pairs_per_s"], None),
        ("training step, peer's setting, s", e["train_step_all_params_one_mechanism_s"], t["train_step_s"], None),
        ("int8 encoder forward 32x64, seq/s", e["int8_encoder_forward_seq_per_s"], None, o["ort_int8_forward_seq_per_s"]),
    ]
def goals(e, t, o):
    return [
        ("1. forward vs ORT fp32 (>= 1.0)", e["encoder_forward_seq_per_s"] / o["ort_fp32_forward_seq_per_s"]),
        ("1. forward vs PyTorch (>= 1.2)", e["encoder_forward_seq_per_s"] / t["encoder_forward_seq_per_s"]),
        ("2. one pair / ORT two sequences (<= 1.0)", e["pipeline_one_pair_ms"] / (2 * o["ort_fp32_batch1_ms"])),
        ("3. training step / PyTorch's (<= 1.0)", e["train_step_all_params_one_mechanism_s"] / t["train_step_s"]),
    ]
fmt = lambda v: "—" if v is None else f"{v:.2f}"
e0 = runs[0][0]
print(f"CPU: {e0['cpu_model']} ({', '.join(e0['cpu_features'])}), {e0['threads']} threads")
for r, (e, t, o) in enumerate(runs, 1):
    print(f"\nround {r}{'':33} {'epitome':>9} {'PyTorch':>9} {'ORT':>9}")
    for name, a, b, c in rows(e, t, o):
        print(f"{name:40} {fmt(a):>9} {fmt(b):>9} {fmt(c):>9}")
ratios = [goals(*run) for run in runs]
print(f"\n{'goal':45} {'median':>7}   rounds")
medians = {}
for i, (name, _) in enumerate(ratios[0]):
    values = [g[i][1] for g in ratios]
    medians[name] = statistics.median(values)
    print(f"{name:45} {medians[name]:7.2f}   {' '.join(f'{v:.2f}' for v in values)}")
print(f"{'bench process peak RSS, MB (largest)':45} {max(e['peak_rss_mb'] for e, _, _ in runs):7.0f}")
p = rss("predict")
print(f"{'4. predict peak RSS, MB (<= 500)':45} {p:7.0f}")
tr = rss("train")
if tr is not None:
    print(f"{'4. train peak RSS, MB (<= 2500)':45} {tr:7.0f}")
json.dump({"rounds": [{"epitome": e, "torch": t, "ort": o} for e, t, o in runs],
           "median_ratios": medians, "predict_peak_rss_mb": p, "train_peak_rss_mb": tr},
          open(f"{out}/summary.json", "w"), indent=1)
print(f"\nall figures: {out}/summary.json")
PY
