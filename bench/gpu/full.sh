#!/usr/bin/env bash
# Issue 8: `framecast run pipeline=full` (the papers' sizes: configs/pipeline/full.yaml) end to
# end on one GPU, shortened to fit a device call: MINUTES of training per model, fewer synthetic
# videos, and generation in this process (the device has no Ray). Prints the run's summary and
# the key numbers of each stage; the run directory (report.html included) lands in $OUT/full.
#
# Here, once:   ../shared/device/fetch-wheels && bench/gpu/fetch-extra-wheels
# Device call:  run(carry=[".whl"], timeout_s=300, command="bash bench/gpu/full.sh")
# On a CPU:     MINUTES=0.1 VIDEOS=40 GENERATED=8 bash bench/gpu/full.sh
# (every stage's device is auto: the GPU where there is one)
set -euo pipefail
OUT=${OUT:-out/gpu}
MINUTES=${MINUTES:-1.5}     # training minutes of each of the two models
VIDEOS=${VIDEOS:-1000}      # synthetic videos of each store (the full pipeline: 10,000)
GENERATED=${GENERATED:-256} # generated videos (the full pipeline: 1,000)
source bench/gpu/setup.sh  # wheels, PY, fc, $OUT/card.txt

fc run pipeline=full run_dir="$OUT/full" \
  stages.mnist.synth.num_videos="$VIDEOS" stages.shapes.synth.num_videos="$VIDEOS" \
  stages.train_lstm.trainer.max_minutes="$MINUTES" stages.train_gan.trainer.max_minutes="$MINUTES" \
  stages.generate_gan.num_videos="$GENERATED" stages.generate_gan.generate.backend=local \
  > "$OUT/full.log" 2>&1 \
  || { tail -n 30 "$OUT/full.log"; exit 1; }
tail -n 25 "$OUT/full.log"
"$PY" - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
card = open(os.path.join(out, "card.txt")).read().strip()
run = os.path.join(out, "full")
print(card)
for name in ("train_lstm", "evaluate_lstm", "train_gan", "generate_gan", "evaluate_gan"):
    path = os.path.join(run, name, "result.json")
    if not os.path.exists(path):
        print(f"{name}: no result.json")
        continue
    r = json.load(open(path))
    keep = {k: v for k, v in r.items() if isinstance(v, int | float | str) and len(str(v)) < 60}
    print(f"{name}: {json.dumps(keep)[:400]}")
PY
