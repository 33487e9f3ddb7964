#!/usr/bin/env bash
# Browser tests: installs Debian's Chromium and playwright-core if missing; trains a tiny model on
# the fixture encoder, serves it on a free loopback port and drives the feedback page; then
# renders an `epitome analyze` report of a synthetic platform at phone and desktop widths.
# The feedback page is served with the shipped model and exemplar library (suggestions need a
# model that tells levels apart); the encoder is fetched once into the cache.
# Usage: tests/browser/run.sh [MODEL_DIR] [FEEDBACK_SCREENSHOT.png] [REPORT_SCREENSHOT.png] [SUGGEST_SCREENSHOT.png]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
shared="$(cd "$root/../shared" && pwd)"

if ! command -v chromium >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
[ -d "$here/node_modules/playwright-core" ] || (cd "$here" && npm install --no-audit --no-fund --silent)

cargo build --release --quiet --manifest-path "$root/Cargo.toml"
bin="$root/target/release/epitome"
work="$(mktemp -d)"
trap 'kill "${server:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
model="${1:-default}"
"$bin" --log warn encoder fetch >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" --log warn serve --model "$model" --addr "127.0.0.1:$port" &
server=$!
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
node "$here/feedback.mjs" "http://127.0.0.1:$port/" "${2:-}" "${4:-}"
kill "$server" 2>/dev/null || true

"$bin" --log warn synth-platform --out "$work/platform" 2>/dev/null
"$bin" --log warn analyze --input "$work/platform/interactions.csv" \
  --predictions "$work/platform/predictions.jsonl" --out "$work/report" --bootstrap 200 >/dev/null 2>&1
node "$here/report.mjs" "$work/report/report.html" "${3:-}"
