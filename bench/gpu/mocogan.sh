#!/usr/bin/env bash
# Issue 6 on one GPU (H100 or H200): MoCoGAN on shape motion, 64x64, 16 frames, conditional on
# the 6 motion categories, trained for MINUTES with the official settings (model=mocogan_paper:
# clip-level video discriminator, weight decay 1e-5, noise before every layer, no gradient
# clipping); the same for the paper's image-only ablation (frames generated independently);
# both evaluated with a video classifier trained here on the real videos. Goals (on the card in
# card.txt): conditional accuracy >= 0.9x the classifier's on real videos; ACD (the object's
# colour, the paper's) below the ablation's; Fréchet distance below the ablation's; the
# Inception Score (from the same classifier) is printed beside the real videos'. Then the
# generate throughput (bench/generate.py --device cuda --no-ray: the device has no Ray).
#
# Here, once:   ../shared/device/fetch-wheels && bench/gpu/fetch-extra-wheels
# Device call:  run(carry=[".whl"], timeout_s=590, command="bash bench/gpu/mocogan.sh")
#   (15 minutes of device time per session: the default MINUTES=3.5 for each of the two GANs
#   leaves room for start-up, data, classifier and evaluation; the issue's 10-minute budget is
#   MINUTES=10 ABLATION=0 in one call and MINUTES=10 ABLATION=only in another)
# Everything lands in $OUT (the device's output folder) or out/gpu here.
set -euo pipefail
OUT=${OUT:-out/gpu}
MINUTES=${MINUTES:-3.5}
CLASSIFIER_MINUTES=${CLASSIFIER_MINUTES:-1}
ABLATION=${ABLATION:-1}         # 1: main + ablation, 0: main only, only: the ablation only
DEVICE=${DEVICE:-cuda}          # DEVICE=cpu MINUTES=0.2 CLASSIFIER_MINUTES=0.1 VIDEOS=64 SIZE=32
VIDEOS=${VIDEOS:-4000}
SIZE=${SIZE:-64}
BATCH=${BATCH:-32}
source bench/gpu/setup.sh  # wheels, PY, fc, $OUT/card.txt

fc synth data=shapes store="$OUT/shapes.zarr" data.size="$SIZE" synth.num_videos="$VIDEOS" \
  synth.length=16 report="$OUT/synth.json" > "$OUT/synth.log" 2>&1
fc train model=video_classifier store="$OUT/shapes.zarr" run_dir="$OUT/classifier" \
  model.frame_size="$SIZE" trainer.backend=local trainer.device="$DEVICE" \
  trainer.max_minutes="$CLASSIFIER_MINUTES" trainer.max_steps=10000000 trainer.batch_size=64 \
  trainer.checkpoint_every=100000 report="$OUT/train_classifier.json" \
  > "$OUT/train_classifier.log" 2>&1

gan() {  # NAME [overrides...]: train a MoCoGAN for MINUTES and evaluate it
  local name=$1
  shift
  fc train model=mocogan_paper store="$OUT/shapes.zarr" run_dir="$OUT/$name" "$@" \
    model.frame_size="$SIZE" model.length=16 model.num_categories=6 trainer.backend=local \
    trainer.clip_grad_norm=null \
    trainer.device="$DEVICE" trainer.batch_size="$BATCH" trainer.max_minutes="$MINUTES" \
    trainer.max_steps=10000000 trainer.log_every=100 trainer.checkpoint_every=100000 \
    report="$OUT/train_$name.json" > "$OUT/train_$name.log" 2>&1
  fc evaluate checkpoint="$OUT/$name/checkpoints/last.pt" store="$OUT/shapes.zarr" \
    evaluate.classifier="$OUT/classifier/checkpoints/last.pt" evaluate.device="$DEVICE" \
    evaluate.out="$OUT/evaluate_$name" report="$OUT/metrics_$name.json" \
    > "$OUT/evaluate_$name.log" 2>&1
}
if [ "$ABLATION" != only ]; then gan mocogan; fi
if [ "$ABLATION" != 0 ]; then gan image_only model.image_only=true; fi

"$PY" - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
card = open(os.path.join(out, "card.txt")).read().strip()
def load(name):
    path = os.path.join(out, f"metrics_{name}.json")
    return json.load(open(path)) if os.path.exists(path) else None
def steps(name):
    t = json.load(open(os.path.join(out, f"train_{name}.json")))
    return f"{t['steps']} steps in {t['seconds']:.0f} s"
main, ablation = load("mocogan"), load("image_only")
print(card)
for name, m in (("mocogan", main), ("image_only", ablation)):
    if m is None:
        continue
    acc, acd, fd = m["accuracy"], m["acd"], m["frechet_distance"]
    print(f"{name}: {steps(name)}")
    if acc is not None:
        ok = acc["ratio"] is not None and acc["ratio"] >= 0.9
        print(f"  accuracy {acc['generated']:.3f} vs real {acc['real']:.3f}: "
              f"{acc['ratio']:.2f}x (goal >= 0.9x: {'met' if ok else 'NOT met'})")
    if acd is not None:
        print(f"  ACD (object colour) {acd['generated']:.4f} vs real {acd['real']:.4f}")
    inception = m.get("inception_score")
    if inception is not None:
        print(f"  Inception Score {inception['generated']:.3f} +- {inception['generated_std']:.3f}"
              f" vs real {inception['real']:.3f} +- {inception['real_std']:.3f}")
    print(f"  Frechet distance (classifier features) {fd:.2f}")
if main and ablation and main["acd"] and ablation["acd"]:
    ok = main["acd"]["generated"] < ablation["acd"]["generated"]
    print(f"ACD mocogan {main['acd']['generated']:.4f} vs image-only "
          f"{ablation['acd']['generated']:.4f} (goal lower: {'met' if ok else 'NOT met'})")
if main and ablation:
    ok = main["frechet_distance"] < ablation["frechet_distance"]
    print(f"Frechet mocogan {main['frechet_distance']:.2f} vs image-only "
          f"{ablation['frechet_distance']:.2f} (goal lower: {'met' if ok else 'NOT met'})")
PY
if [ "${BENCH:-1}" = 1 ]; then
  "$PY" bench/generate.py --device "$DEVICE" --no-ray --repeat 2 --json "$OUT/bench_generate.json" \
    > "$OUT/bench_generate.log" 2>&1 && tail -n 8 "$OUT/bench_generate.log" \
    || echo "bench/generate.py failed: see $OUT/bench_generate.log"
fi
