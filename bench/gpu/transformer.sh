#!/usr/bin/env bash
# Issue 19 on one GPU (H100 or H200): the space-time Transformer predictor at its GPU size
# (model=transformer_predictor: 4x4 patches, 256-wide tokens, 8 blocks, the warp head) against
# the paper's composite LSTM (model=lstm_autoencoder: 2048 units, pixel head) and the warp-head
# ConvLSTM scaled up as in bench/gpu/quality.sh, each trained MINUTES on Moving MNIST and
# evaluated beside copy-last-frame on held-out digits (10 -> 10) by bench/quality.py; then its
# streaming latency at 64x64, K=5 (bench/stream.py), with and without the KV cache.
#
# Here, once:   ../shared/device/fetch-wheels && bench/gpu/fetch-extra-wheels
# Device call:  run(carry=[".whl"], timeout_s=580, command="bash bench/gpu/transformer.sh")
#   (3 trainings of MINUTES each, synth, evaluation, 2 x SECONDS_RUN of streaming: the defaults
#   fit one call; STREAM=0 skips the streaming)
# Everything lands in $OUT (the device's output folder) or out/gpu here.
set -euo pipefail
OUT=${OUT:-out/gpu}
MINUTES=${MINUTES:-2}
SECONDS_RUN=${SECONDS_RUN:-10}
DEVICE=${DEVICE:-cuda}          # DEVICE=cpu MINUTES=0.1 SECONDS_RUN=3 tries it on a CPU
source bench/gpu/setup.sh  # wheels, PY, fc, $OUT/card.txt
"$PY" bench/quality.py --minutes "$MINUTES" --device "$DEVICE" --batch 64 --videos 2000 \
  --datasets mnist --paper-model lstm_autoencoder \
  --cpu-set model.layers=2 model.conv_channels=96 --transformer-model transformer_predictor \
  --out "$OUT/transformer" --json "$OUT/transformer_quality.json" \
  > "$OUT/transformer_quality.log" 2>&1 || { tail -n 30 "$OUT/transformer_quality.log"; exit 1; }
echo "$(cat "$OUT/card.txt"):"
sed -n '/^prediction quality/,$p' "$OUT/transformer_quality.log"
if [ "${STREAM:-1}" = 1 ]; then
  for CACHE in true false; do
    LOG="$OUT/transformer_stream_kv_cache_$CACHE"
    "$PY" bench/stream.py --model transformer_predictor --set "kv_cache=$CACHE" \
      --device "$DEVICE" --seconds "$SECONDS_RUN" --horizon 5 --json "$LOG.json" \
      > "$LOG.log" 2>&1 || { tail -n 30 "$LOG.log"; exit 1; }
    sed -n '/^stream latency/,$p' "$LOG.log"
  done
fi
