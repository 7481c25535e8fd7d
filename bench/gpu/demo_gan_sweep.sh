#!/usr/bin/env bash
# Issue 8: which MoCoGAN settings make the demo's generated shapes recognisable (circles and
# squares, models.metrics.shape_recognisability) and after how many steps. The demo trains on a
# 2-core CPU for 5 minutes (~4,600 steps); a GPU runs the same steps of the same tiny model, in
# fp32 like the CPU, several settings at once, so the sweep says what to ship in
# configs/pipeline/demo.yaml and what it would cost on the CPU (steps x the CPU's s/step,
# measured there).
#
# Here, once:   ../shared/device/fetch-wheels && bench/gpu/fetch-extra-wheels
# Device call:  run(carry=[".whl"], timeout_s=420, command="bash bench/gpu/demo_gan_sweep.sh")
# A subset:    ONLY="base ib64" STEPS=... MINUTES=... bash bench/gpu/demo_gan_sweep.sh
# On a CPU:     DEVICE=cpu STEPS=40 EVERY=20 MINUTES=0.5 VIDEOS=64 bash bench/gpu/demo_gan_sweep.sh
# Everything lands in $OUT (the device's output folder) or out/gpu here; the table is printed and
# written to $OUT/demo_gan_sweep.json.
set -euo pipefail
OUT=${OUT:-out/gpu}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-16000}       # max steps per setting; checkpoints every EVERY are evaluated
EVERY=${EVERY:-2000}
MINUTES=${MINUTES:-2.5}     # and at most this long per setting (they train side by side)
VIDEOS=${VIDEOS:-256}       # generated videos per evaluation
source bench/gpu/setup.sh  # wheels, PY, fc, $OUT/card.txt

# The demo's shapes store (configs/pipeline/demo.yaml: shapes), and the same with shape x motion
# labels (12 categories: the category also says which shape to draw).
DATA=(data=shapes data.size=32 "data.radius=[0.2,0.3]" "data.background=[0,0,0]"
      synth.num_videos=600 synth.length=16)
fc synth "${DATA[@]}" store="$OUT/shapes.zarr" report="$OUT/synth.json" > "$OUT/synth.log" 2>&1
fc synth "${DATA[@]}" data.label=shape_motion store="$OUT/shapes_sm.zarr" \
  report="$OUT/synth_sm.json" > "$OUT/synth_sm.log" 2>&1

# The demo's train_gan settings; each setting below changes a few of them.
BASE=(model=mocogan model.frame_size=32 model.length=6 model.gen_channels=16
      model.disc_channels=16 model.noise_anneal_steps=500 model.lr=0.0005
      trainer.backend=local trainer.device="$DEVICE" trainer.precision=fp32
      trainer.batch_size=16 trainer.clip_grad_norm=null trainer.log_every=100
      trainer.max_steps="$STEPS" trainer.max_minutes="$MINUTES" trainer.checkpoint_every="$EVERY")

setting() {  # NAME STORE CATEGORIES [overrides...]: train, then evaluate every checkpoint
  local name=$1 store=$2 cats=$3
  shift 3
  local dir="$OUT/sweep/$name"
  mkdir -p "$dir"
  fc train "${BASE[@]}" model.num_categories="$cats" store="$store" run_dir="$dir" "$@" \
    report="$dir/train.json" > "$dir/train.log" 2>&1 || { echo "$name: training failed"; return; }
  for ckpt in "$dir"/checkpoints/step-*.pt "$dir/checkpoints/last.pt"; do
    [ -f "$ckpt" ] || continue
    local tag
    tag=$(basename "$ckpt" .pt)
    fc evaluate checkpoint="$ckpt" store="$store" evaluate.device="$DEVICE" \
      evaluate.num_videos="$VIDEOS" evaluate.split=all evaluate.out="$dir/eval_$tag" \
      report="$dir/metrics_$tag.json" > "$dir/eval_$tag.log" 2>&1 || echo "$name $tag: evaluation failed"
  done
}
want() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }  # ONLY="base sn": a subset
S="$OUT/shapes.zarr"
want base && setting base "$S" 6 &
want sn && setting sn "$S" 6 model.spectral_norm=true &
want ib64 && setting ib64 "$S" 6 model.image_batch=64 &
want sn_ib64 && setting sn_ib64 "$S" 6 model.spectral_norm=true model.image_batch=64 &
want d32 && setting d32 "$S" 6 model.disc_channels=32 &
want sn_d32_ib64 && setting sn_d32_ib64 "$S" 6 model.spectral_norm=true model.disc_channels=32 model.image_batch=64 &
want sn_lr2e-4 && setting sn_lr2e-4 "$S" 6 model.spectral_norm=true model.lr=0.0002 &
want sm_sn_ib64 && setting sm_sn_ib64 "$OUT/shapes_sm.zarr" 12 model.spectral_norm=true model.image_batch=64 &
# The demo's recipe since session 4 (configs/pipeline/demo.yaml): shape x motion categories,
# projection discriminators, 64 frames a step for D_I, samples from G's moving average; at what
# step do the requested squares come out clean (by_request read_as_requested)?
PROJ=(model.projection=true model.image_batch=64 model.ema=0.999)
want sm_proj_ema && setting sm_proj_ema "$OUT/shapes_sm.zarr" 12 "${PROJ[@]}" &
want sm_proj_ema_d32 && setting sm_proj_ema_d32 "$OUT/shapes_sm.zarr" 12 "${PROJ[@]}" model.disc_channels=32 &
wait

"$PY" - "$OUT" <<'PY'
import glob, json, math, os, sys
out = sys.argv[1]
card = open(os.path.join(out, "card.txt")).read().strip()
rows, real = [], None
for metrics in sorted(glob.glob(os.path.join(out, "sweep", "*", "metrics_*.json"))):
    name = os.path.basename(os.path.dirname(metrics))
    m = json.load(open(metrics))
    sf = m.get("shape_fill") or {}
    if not sf:
        continue
    real = real or sf["real"]
    train = json.load(open(os.path.join(os.path.dirname(metrics), "train.json")))
    asked = {f"{shape}_asked": part.get("read_as_requested", float("nan"))
             for shape, part in (sf.get("by_request") or {}).items()}
    rows.append({"setting": name, "step": m["step"], "gpu_steps_per_s": train["steps"] / max(train["seconds"], 1e-9),
                 "acd": m["acd"]["generated"], "acd_real": m["acd"]["real"],
                 "circle_asked": float("nan"), "square_asked": float("nan"), **sf["generated"], **asked})
rows.sort(key=lambda r: (r["setting"], r["step"]))
keys = ["single_object", "circle_like", "square_like", "recognisable", "read_shape", "template_iou_median",
        "fill_median", "circle_asked", "square_asked"]
print(card)
print(f"{'setting':<16}{'step':>7}" + "".join(f"{k[:12]:>13}" for k in keys) + f"{'acd':>8}")
if real:
    print(f"{'(real)':<16}{'':>7}" + "".join(f"{real.get(k, float('nan')):>13.3f}" for k in keys))
for r in rows:
    print(f"{r['setting'][:15]:<16}{r['step']:>7}" + "".join(
        f"{r[k]:>13.3f}" if not math.isnan(r[k]) else f"{'nan':>13}" for k in keys) + f"{r['acd']:>8.4f}")
json.dump({"card": card, "real": real, "rows": rows}, open(os.path.join(out, "demo_gan_sweep.json"), "w"), indent=1)
PY
