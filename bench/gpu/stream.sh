#!/usr/bin/env bash
# Issue 9 on one GPU (H100 or H200): `framecast stream` per-frame latency of the paper-size
# composite LSTM (2048 units, 64x64, K=5 predicted frames per incoming frame) from a 30 fps
# source, in-process; goal p95 <= 5 ms (model) on the card named in card.txt.
#
# Here, once:   ../shared/device/fetch-wheels && bench/gpu/fetch-extra-wheels
# Device call:  run(carry=[".whl"], timeout_s=300, command="bash bench/gpu/stream.sh")
#   (about 1 minute of streaming; SERVE=1 adds the same stream through framecast serve on
#   loopback, which starts Ray: a few minutes more)
# Everything lands in $OUT (the device's output folder) or out/gpu here.
set -euo pipefail
OUT=${OUT:-out/gpu}
SECONDS_RUN=${SECONDS_RUN:-20}
DEVICE=${DEVICE:-cuda}          # DEVICE=cpu SECONDS_RUN=5 HIDDEN=512 tries it on a CPU
HIDDEN=${HIDDEN:-2048}
source bench/gpu/setup.sh  # wheels, PY, fc, $OUT/card.txt
EXTRA=()
if [ "${SERVE:-0}" = 1 ]; then EXTRA+=(--serve); fi
"$PY" bench/stream.py --model lstm_autoencoder --hidden "$HIDDEN" --device "$DEVICE" \
  --seconds "$SECONDS_RUN" --horizon 5 --json "$OUT/bench_stream.json" "${EXTRA[@]}" \
  2>&1 | tee "$OUT/bench_stream.log" | tail -n 20
"$PY" - "$OUT/bench_stream.json" "$OUT/card.txt" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))
card = open(sys.argv[2]).read().strip()
m = b["stream"]["latency_ms"]["model"]
t = b["stream"]["latency_ms"]["total"]
ok = m["p95"] is not None and m["p95"] <= 5.0
print(f"{card}: model p95 {m['p95']} ms (goal <= 5 ms: {'met' if ok else 'NOT met'}), "
      f"capture->page p95 {t['p95']} ms, fps {b['stream']['fps']}, "
      f"dropped {b['stream']['frames_dropped']}")
PY
