#!/usr/bin/env bash
# Issue 4 on one GPU (H100 or H200): the paper configuration's quality after MINUTES of training
# (configs/model/lstm_autoencoder_paper.yaml: the paper's best Table 1 model with the official
# recipe, batch 80, no gradient-norm clip), and the training-step throughput against the plain
# reference (bench/train.py).
#
# Here, once:   ../shared/device/fetch-wheels && bench/gpu/fetch-extra-wheels
# Device call:  run(carry=[".whl"], timeout_s=560, command="bash bench/gpu/lstm_autoencoder.sh")
#   (15 minutes of device time per session: MINUTES=5 leaves room for set-up and evaluation;
#   the conv goal needs its own call: CELL=conv MINUTES=8 bash bench/gpu/lstm_autoencoder.sh)
# Everything lands in $OUT (the device's output folder) or out/gpu here.
set -euo pipefail
OUT=${OUT:-out/gpu}
MINUTES=${MINUTES:-5}
CELL=${CELL:-fc}
DEVICE=${DEVICE:-cuda}          # DEVICE=cpu MINUTES=0.2 EXTRA="model.hidden=64" tries it on a CPU
read -r -a EXTRA <<< "${EXTRA:-}"
source bench/gpu/setup.sh  # wheels, PY, fc, $OUT/card.txt

# Held-out sequences: two-digit Moving MNIST from the test digits (never seen in training).
fc synth data=moving_mnist store="$OUT/mm.zarr" synth.num_videos=2000 data.test_fraction=0.5 \
  synth.workers=0 report="$OUT/synth.json" > "$OUT/synth.log" 2>&1

if [ "$CELL" = conv ]; then
  MODEL=(model=lstm_autoencoder model.cell=conv model.layers=2 model.conv_channels=96
         model.patch=4 model.kernel=5 model.conditional=true)
  BATCH=64
else
  # the paper: 2 layers of 2048 peephole units, conditional future predictor, 10 in / 10 out,
  # momentum SGD on the summed loss with a clipped step; batch 80 and no norm clip (official)
  MODEL=(model=lstm_autoencoder_paper trainer.clip_grad_norm=null)
  BATCH=80
fi
# Training sequences are generated on the fly (data=moving_mnist), as in the paper.
fc train data=moving_mnist "${MODEL[@]}" run_dir="$OUT/$CELL" trainer.backend=local \
  "${EXTRA[@]}" trainer.device="$DEVICE" trainer.batch_size=$BATCH trainer.max_minutes="$MINUTES" \
  trainer.max_steps=10000000 trainer.loader_workers=8 trainer.log_every=100 \
  trainer.checkpoint_every=100000 report="$OUT/train_$CELL.json" 2>&1 | tee "$OUT/train_$CELL.log" | tail -n 3
fc evaluate checkpoint="$OUT/$CELL/checkpoints/last.pt" store="$OUT/mm.zarr" \
  evaluate.device="$DEVICE" evaluate.batch_size=256 report="$OUT/metrics_$CELL.json" \
  > "$OUT/evaluate_$CELL.log" 2>&1
"$PY" - "$OUT/metrics_$CELL.json" "$OUT/train_$CELL.json" "$OUT/card.txt" <<'PY'
import json, sys
m, t = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
card = open(sys.argv[3]).read().strip()
print(f"{card}: steps {t['steps']} in {t['seconds']:.0f} s, {t['samples_per_s']:.0f} samples/s")
for k in ("mse", "bce", "psnr", "ssim"):
    print(f"  {k}: {m[k]:.2f}  (copy-last {m['copy_last'][k]:.2f})")
PY
if [ "$CELL" = fc ] && [ "$DEVICE" = cuda ] && [ -f bench/train.py ]; then
  "$PY" bench/train.py --device cuda --json "$OUT/bench_train.json" > "$OUT/bench_train.log" 2>&1 \
    && cat "$OUT/bench_train.log" || echo "bench/train.py failed: see $OUT/bench_train.log"
fi
