#!/usr/bin/env bash
# epitome's benchmark, then the PyTorch and ONNX Runtime peers, one after the other on this
# machine, and the ratios of the engine goals (docs/PERFORMANCE.md). Absolute figures do not
# carry from one host to the next; ratios measured side by side do.
#
#   scripts/bench-vs-peers.sh [--train] [--out DIR]
#
# Needs the peers' virtual environment (../shared/peer/*.py docstrings):
#   python3 -m venv ~/torchpeer && ~/torchpeer/bin/pip install torch transformers onnxruntime onnx onnxscript
# PEER_PYTHON overrides its interpreter. --train also measures the peak memory of a full
# default `epitome train` on ../shared/data/epitome-reddit (about 15 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

train=false
out=$(mktemp -d)
while [ $# -gt 0 ]; do
    case "$1" in
        --train) train=true ;;
        --out) out="$2"; shift ;;
        *) echo "usage: $0 [--train] [--out DIR]" >&2; exit 2 ;;
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
echo "== epitome bench" >&2
RAYON_NUM_THREADS=$threads "$bin" bench --iters 6 --json "$out/epitome.json" >/dev/null
echo "== PyTorch peer" >&2
"$py" ../shared/peer/torch_bench.py --encoder "$encoder" --threads "$threads" 2>/dev/null | tail -1 > "$out/torch.json"
echo "== ONNX Runtime peer" >&2
"$py" ../shared/peer/ort_bench.py --encoder "$encoder" --threads "$threads" 2>/dev/null | tail -1 > "$out/ort.json"

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

"$py" - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
e = json.load(open(f"{out}/epitome.json"))
t = json.load(open(f"{out}/torch.json"))
o = json.load(open(f"{out}/ort.json"))
def rss(name):
    p = f"{out}/{name}.rss"
    return int(open(p).read().split()[0]) / 1024 if os.path.exists(p) else None
rows = [
    ("encoder forward 32x64, seq/s", e["encoder_forward_seq_per_s"], t["encoder_forward_seq_per_s"], o["ort_fp32_forward_seq_per_s"]),
    ("one 64-token sequence, ms", e["encoder_forward_one_sequence_ms"], None, o["ort_fp32_batch1_ms"]),
    ("one pair, three mechanisms, ms", e["pipeline_one_pair_ms"], 1000 / t["original_pipeline_pairs_per_s"], 2 * o["ort_fp32_batch1_ms"]),
    ("batch 32, three mechanisms, pairs/s", e["batched_pipeline_pairs_per_s"], t["batched_pipeline_pairs_per_s"], None),
    ("training step, peer's setting, s", e["train_step_all_params_one_mechanism_s"], t["train_step_s"], None),
]
fmt = lambda v: "—" if v is None else f"{v:.2f}"
print(f"CPU: {e['cpu_model']} ({', '.join(e['cpu_features'])}), {e['threads']} threads")
print(f"{'':40} {'epitome':>9} {'PyTorch':>9} {'ORT fp32':>9}")
for name, a, b, c in rows:
    print(f"{name:40} {fmt(a):>9} {fmt(b):>9} {fmt(c):>9}")
print(f"ORT int8: {o['ort_int8_forward_seq_per_s']} seq/s, {o['ort_int8_batch1_ms']} ms one sequence")
print()
goals = [
    ("1. forward vs ORT fp32 (>= 1.0)", e["encoder_forward_seq_per_s"] / o["ort_fp32_forward_seq_per_s"]),
    ("1. forward vs PyTorch (>= 1.2)", e["encoder_forward_seq_per_s"] / t["encoder_forward_seq_per_s"]),
    ("2. one pair / ORT two sequences (<= 1.0)", e["pipeline_one_pair_ms"] / (2 * o["ort_fp32_batch1_ms"])),
    ("3. training step / PyTorch's (<= 1.0)", e["train_step_all_params_one_mechanism_s"] / t["train_step_s"]),
]
for name, r in goals:
    print(f"{name:45} {r:.2f}")
print(f"{'bench process peak RSS, MB':45} {e['peak_rss_mb']:.0f}")
p = rss("predict")
print(f"{'4. predict peak RSS, MB (<= 500)':45} {p:.0f}")
tr = rss("train")
if tr is not None:
    print(f"{'4. train peak RSS, MB (<= 2500)':45} {tr:.0f}")
json.dump({"epitome": e, "torch": t, "ort": o, "predict_peak_rss_mb": p, "train_peak_rss_mb": tr},
          open(f"{out}/summary.json", "w"), indent=1)
print(f"\nall figures: {out}/summary.json")
PY
