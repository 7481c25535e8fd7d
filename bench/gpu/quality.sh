#!/usr/bin/env bash
# Issue 15 on one GPU (H100 or H200): bench/quality.py at the papers' sizes. The paper's composite
# LSTM (model=lstm_autoencoder: 2048 units, pixel head) against the warp-head predictor scaled up
# (model=lstm_autoencoder_cpu with a 2-layer, 96-channel ConvLSTM), each trained MINUTES on Moving
# MNIST and on data=textures, evaluated beside copy-last-frame on held-out videos (10 -> 10).
#
# Here, once:   ../shared/device/fetch-wheels && bench/gpu/fetch-extra-wheels
# Device call:  run(carry=[".whl"], timeout_s=580, command="bash bench/gpu/quality.sh")
#   (4 trainings of MINUTES each plus synth and evaluation: MINUTES=2 fits one call)
# Everything lands in $OUT (the device's output folder) or out/gpu here.
set -euo pipefail
OUT=${OUT:-out/gpu}
MINUTES=${MINUTES:-2}
DEVICE=${DEVICE:-cuda}          # DEVICE=cpu MINUTES=0.1 tries it on a CPU
source bench/gpu/setup.sh  # wheels, PY, fc, $OUT/card.txt
"$PY" bench/quality.py --minutes "$MINUTES" --device "$DEVICE" --batch 64 --videos 2000 \
  --paper-model lstm_autoencoder --cpu-set model.layers=2 model.conv_channels=96 \
  --out "$OUT/quality" --json "$OUT/quality.json" > "$OUT/quality.log" 2>&1 \
  || { tail -n 30 "$OUT/quality.log"; exit 1; }
echo "$(cat "$OUT/card.txt"):"
sed -n '/^prediction quality/,$p' "$OUT/quality.log"
