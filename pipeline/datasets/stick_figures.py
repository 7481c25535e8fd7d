"""Stick figures: a synthetic articulated-human dataset with ground-truth 2-D keypoints.

Real pose datasets (Penn Action, Human3.6M) cannot be downloaded here, so the hierarchical
predictor (Villegas et al., ICML 2017) is developed on this one. Every video shows one stick
figure performing one action (``ACTIONS``; the action's index is the video's label):

    0 walk            legs and arms swing in opposition, the body drifts slowly sideways
    1 wave            one arm raised, its forearm swinging
    2 jumping_jacks   arms and legs open and close together, the body hops
    3 squat           thighs forward, knees bend, arms reach forward; the body lowers
    4 kick            one leg kicks forward and returns, the arms counter-swing
    5 punch           fists alternate from a guard to full extension

Joints: 13, in the Penn Action order (``JOINTS``): head, shoulders, elbows, wrists, hips, knees,
ankles (left before right, "left" being the figure's own left). ``LIMBS`` are the 14 drawn
segments (head-to-neck is drawn from the head joint to the shoulders' midpoint).

Keypoints are **(x, y) pixel coordinates** (x = column, y = row, pixel centres at integers,
0 .. size - 1), float32 (T, 13, 2): the convention of Penn Action, COCO and torchvision's
Keypoint R-CNN. (The shapes and Moving MNIST generators give positions as (y, x): keypoints
follow the pose-dataset convention instead.) Every joint of every frame is inside the frame.

Per video, drawn from the video's own generator:
- the action; body proportions (each segment length x U(0.85, 1.15)); a mirror flag (the
  figure faces left or right);
- the motion: period U(12, 28) frames per cycle (the speed), start phase U(0, 1), amplitude
  x U(0.8, 1.1);
- the placement: the figure's full trajectory (all frames) is fitted to a height of
  U(0.5, 0.8) of the frame, then put at a random position where it stays inside the frame;
- the colours: sky (background) uniform in {0..255}^3, a floor band below the feet a shade
  apart, and three figure colours (torso and head, left limbs, right limbs), each at least
  100 away (Euclidean, RGB) from both sky and floor.

Rendering is anti-aliased with a distance field: a pixel at distance d from a limb's centre
line (a segment of width w) is covered by a = clip(w/2 + 1/2 - d, 0, 1), the head is a disk of
radius r covered by clip(r + 1/2 - d, 0, 1); parts are composited in order torso, right limbs,
left limbs, head: pixel = (1 - a) pixel + a colour. Sizes scale with the frame (64 or 128).

Video ``i`` of ``generate`` depends only on ``(seed, split, i)``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

FPS = 10
ACTIONS: tuple[str, ...] = ("walk", "wave", "jumping_jacks", "squat", "kick", "punch")
JOINTS: tuple[str, ...] = (
    "head",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
NUM_JOINTS = len(JOINTS)
HEAD, LSH, RSH, LEL, REL, LWR, RWR, LHI, RHI, LKN, RKN, LAN, RAN = range(NUM_JOINTS)
# Segments between joints (drawn, and used by the model's limb heatmaps): torso, arms, legs.
LIMBS: tuple[tuple[int, int], ...] = (
    (LSH, RSH),
    (LHI, RHI),
    (LSH, LHI),
    (RSH, RHI),
    (HEAD, LSH),
    (HEAD, RSH),
    (LSH, LEL),
    (LEL, LWR),
    (RSH, REL),
    (REL, RWR),
    (LHI, LKN),
    (LKN, LAN),
    (RHI, RKN),
    (RKN, RAN),
)
# Body proportions in units of a standing figure's ankle-to-head-top height (about 1).
BODY = {
    "torso": 0.30,  # pelvis (hips' midpoint) to neck (shoulders' midpoint)
    "neck": 0.10,  # neck to the head's centre
    "head": 0.065,  # head radius
    "shoulder": 0.09,  # half the shoulder width
    "hip": 0.06,  # half the hip width
    "upper_arm": 0.16,
    "forearm": 0.15,
    "thigh": 0.24,
    "shin": 0.23,
}
MIN_COLOR_DISTANCE = 100.0
LINE_WIDTH = 0.045  # limb width, in body units (about 1.9 px at 64x64), at least MIN_WIDTH_PX
MIN_WIDTH_PX = 1.5
_SPLIT_STREAM = {"train": 0, "test": 1}


def _direction(angle: np.ndarray) -> np.ndarray:
    """Unit vectors (..., 2) in body coordinates (x right, y up) of limbs at `angle` radians
    from hanging straight down, positive turning towards +x."""
    return np.stack([np.sin(angle), -np.cos(angle)], axis=-1)


def action_angles(action: str, phase: np.ndarray, amplitude: float = 1.0) -> dict[str, np.ndarray]:
    """Joint angles (radians, each (T,)) and offsets of `action` at cycle phases `phase` (T,).

    Keys: shoulder_l/r and hip_l/r (from hanging down, + towards +x), elbow_l/r and knee_l/r
    (relative to the upper segment), jump (the body lifted, body units), drift (sideways).
    "+x" is the figure's left (a front view) and, for the sagittal actions, its front.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}: expected one of {ACTIONS}")
    a = amplitude
    phi = 2.0 * np.pi * phase
    zero = np.zeros_like(phi)
    out = {
        k: zero.copy()
        for k in (
            "shoulder_l",
            "shoulder_r",
            "elbow_l",
            "elbow_r",
            "hip_l",
            "hip_r",
            "knee_l",
            "knee_r",
            "jump",
            "drift",
        )
    }
    if action == "walk":
        swing = np.sin(phi)
        out["hip_l"], out["hip_r"] = 0.45 * a * swing, -0.45 * a * swing
        out["knee_l"] = -0.7 * a * np.maximum(0.0, np.sin(phi + np.pi / 2))
        out["knee_r"] = -0.7 * a * np.maximum(0.0, np.sin(phi - np.pi / 2))
        out["shoulder_l"], out["shoulder_r"] = -0.4 * a * swing, 0.4 * a * swing
        out["elbow_l"] = out["elbow_r"] = zero + 0.35
        out["drift"] = 0.12 * np.sin(phi / 4.0)  # a slow sway across the frame
    elif action == "wave":
        out["shoulder_r"] = -(2.45 + 0.15 * a * np.sin(phi))
        out["elbow_r"] = 1.2 * a * np.sin(phi)
        out["shoulder_l"] = zero + 0.15
        out["hip_l"], out["hip_r"] = zero + 0.08, zero - 0.08
    elif action == "jumping_jacks":
        open_ = 0.5 - 0.5 * np.cos(phi)  # 0 closed .. 1 open
        out["shoulder_l"] = 0.2 + 2.5 * a * open_
        out["shoulder_r"] = -out["shoulder_l"]
        out["hip_l"] = 0.05 + 0.35 * a * open_
        out["hip_r"] = -out["hip_l"]
        out["jump"] = 0.06 * a * np.sin(phi) ** 2
    elif action == "squat":
        down = 0.5 - 0.5 * np.cos(phi)
        out["hip_l"] = out["hip_r"] = 1.3 * a * down
        out["knee_l"] = out["knee_r"] = -2.2 * a * down
        out["shoulder_l"] = out["shoulder_r"] = 0.1 + 1.4 * a * down
    elif action == "kick":
        k = np.maximum(0.0, np.sin(phi)) ** 1.5
        out["hip_r"] = 1.4 * a * k
        out["knee_r"] = -1.8 * a * k * (1.0 - k)
        out["hip_l"] = -0.1 * a * k
        out["shoulder_l"], out["shoulder_r"] = 0.25 + 0.5 * a * k, -(0.25 + 0.3 * a * k)
        out["elbow_l"] = out["elbow_r"] = zero + 0.3
    else:  # punch
        k_l, k_r = np.maximum(0.0, np.sin(phi)), np.maximum(0.0, -np.sin(phi))
        out["shoulder_l"], out["shoulder_r"] = 0.6 + 0.97 * a * k_l, 0.6 + 0.97 * a * k_r
        out["elbow_l"], out["elbow_r"] = 2.2 * (1.0 - a * k_l), 2.2 * (1.0 - a * k_r)
        out["hip_l"], out["hip_r"] = zero + 0.25, zero - 0.2
        out["knee_l"] = zero - 0.2
    return out


def pose_body(angles: dict[str, np.ndarray], body: dict[str, float]) -> np.ndarray:
    """Forward kinematics: joints (T, 13, 2) in body coordinates (x right, y up), the lowest
    ankle of each frame on y = 0 (the ground), lifted by angles["jump"], moved by "drift"."""
    steps = len(angles["jump"])
    joints = np.zeros((steps, NUM_JOINTS, 2))
    pelvis = np.zeros((steps, 2))
    neck = pelvis + [0.0, body["torso"]]
    joints[:, HEAD] = neck + [0.0, body["neck"]]
    for side, sign, (sh, el, wr, hi, kn, an) in (
        ("l", 1.0, (LSH, LEL, LWR, LHI, LKN, LAN)),
        ("r", -1.0, (RSH, REL, RWR, RHI, RKN, RAN)),
    ):
        joints[:, sh] = neck + [sign * body["shoulder"], 0.0]
        upper = angles[f"shoulder_{side}"]
        joints[:, el] = joints[:, sh] + body["upper_arm"] * _direction(upper)
        joints[:, wr] = joints[:, el] + body["forearm"] * _direction(
            upper + angles[f"elbow_{side}"]
        )
        joints[:, hi] = pelvis + [sign * body["hip"], 0.0]
        thigh = angles[f"hip_{side}"]
        joints[:, kn] = joints[:, hi] + body["thigh"] * _direction(thigh)
        joints[:, an] = joints[:, kn] + body["shin"] * _direction(thigh + angles[f"knee_{side}"])
    ground = np.minimum(joints[:, LAN, 1], joints[:, RAN, 1])  # (T,)
    joints[..., 1] += (angles["jump"] - ground)[:, None]
    joints[..., 0] += angles["drift"][:, None]
    return joints


def _far_color(rng: np.random.Generator, avoid: list[np.ndarray]) -> np.ndarray:
    while True:
        color = rng.integers(0, 256, 3)
        if all(np.linalg.norm(color - a) >= MIN_COLOR_DISTANCE for a in avoid):
            return color


def render(
    keypoints: np.ndarray,
    head_radius: float,
    line_width: float,
    colors: np.ndarray,
    sky: np.ndarray,
    floor: np.ndarray | None = None,
    floor_y: float | None = None,
    size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Frames (T, size, size, 3) uint8 of the figures with `keypoints` (T, 13, 2) (x, y), and
    the figure's coverage (T, size, size) float32 in [0, 1] (the union of its parts).

    colors (3, 3): RGB of torso+head, left limbs, right limbs. Rows below `floor_y` (pixels)
    are painted `floor`. Lines and the head are anti-aliased by the distance field (module doc).
    """
    keypoints = np.asarray(keypoints, dtype=np.float32)
    colors = np.asarray(colors, dtype=np.float32)
    background = np.empty((size, size, 3), np.float32)
    background[:] = np.asarray(sky, np.float32)
    if floor is not None and floor_y is not None:
        background[np.arange(size) > floor_y] = np.asarray(floor, np.float32)
    # The figure's parts in drawing order: torso, right limbs, left limbs, then the neck (head
    # to the shoulders' midpoint, index -1) and the head disk, with their colour rows.
    torso = [(LSH, RSH), (LHI, RHI), (LSH, LHI), (RSH, RHI)]
    right = [(RSH, REL), (REL, RWR), (RHI, RKN), (RKN, RAN)]
    left = [(LSH, LEL), (LEL, LWR), (LHI, LKN), (LKN, LAN)]
    parts = [(seg, 0) for seg in torso] + [(seg, 2) for seg in right]
    parts += [(seg, 1) for seg in left] + [((HEAD, -1), 0)]
    reach = max(line_width / 2.0, head_radius) + 1.0  # coverage is 0 beyond this distance
    frames = np.empty((len(keypoints), size, size, 3), np.uint8)
    union = np.zeros((len(keypoints), size, size), np.float32)
    for t, kp in enumerate(keypoints):
        neck = (kp[LSH] + kp[RSH]) / 2.0
        img = background.copy()
        cover = union[t]
        for (i, j), color in [*parts, ((HEAD, HEAD), 0)]:
            a, b = kp[i], (neck if j == -1 else kp[j])
            # Only the pixels of the part's bounding box (plus its reach) can be covered.
            x0, y0 = np.floor(np.minimum(a, b) - reach).astype(int).clip(0, size)
            x1, y1 = np.ceil(np.maximum(a, b) + reach + 1).astype(int).clip(0, size)
            if x0 >= x1 or y0 >= y1:
                continue
            ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            pix = np.stack([xs.ravel(), ys.ravel()], axis=1)
            if i == j:  # the head disk
                d = np.linalg.norm(pix - a, axis=1)
                alpha = np.clip(head_radius + 0.5 - d, 0.0, 1.0)
            else:
                alpha = segment_coverage(pix, a[None], b[None], line_width)[0]
            alpha = alpha.reshape(y1 - y0, x1 - x0)
            window = img[y0:y1, x0:x1]
            window += alpha[..., None] * (colors[color] - window)
            np.maximum(cover[y0:y1, x0:x1], alpha, out=cover[y0:y1, x0:x1])
        frames[t] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return frames, union


def segment_coverage(pix: np.ndarray, a: np.ndarray, b: np.ndarray, width: float) -> np.ndarray:
    """Anti-aliased coverage (S, P) of P pixel centres (P, 2) by S segments a->b (S, 2) of
    `width` pixels: clip(width/2 + 1/2 - distance to the segment, 0, 1)."""
    ab = (b - a)[:, None, :]  # (S, 1, 2)
    ap = pix[None, :, :] - a[:, None, :]  # (S, P, 2)
    denom = np.maximum((ab * ab).sum(-1), 1e-12)
    s = np.clip((ap * ab).sum(-1) / denom, 0.0, 1.0)  # projection onto the segment
    d = np.linalg.norm(ap - s[..., None] * ab, axis=-1)
    return np.clip(width / 2.0 + 0.5 - d, 0.0, 1.0)


def stick_figure_video(
    rng: np.random.Generator, length: int, size: int = 64, *, action: str | None = None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """One video: frames (length, size, size, 3) uint8, keypoints (length, 13, 2) float32 (x, y)
    and its info. Draws from ``rng`` in a fixed order (a given `action` is still drawn, then
    replaced, so the other draws do not change)."""
    if size < 32:
        raise ValueError(f"size must be >= 32, got {size}")
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    label = int(rng.integers(len(ACTIONS)))
    if action is not None:
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}: expected one of {ACTIONS}")
        label = ACTIONS.index(action)
    body = {k: v * float(rng.uniform(0.85, 1.15)) for k, v in BODY.items()}
    mirror = 1.0 if rng.random() < 0.5 else -1.0
    period = float(rng.uniform(12.0, 28.0))  # frames per cycle
    phase0 = float(rng.random())
    amplitude = float(rng.uniform(0.8, 1.1))
    height_fraction = float(rng.uniform(0.5, 0.8))
    place = rng.random(2)
    sky = rng.integers(0, 256, 3)
    floor = np.clip(sky + rng.choice([-1, 1]) * rng.integers(25, 45, 3), 0, 255)
    colors = np.stack([_far_color(rng, [sky, floor]) for _ in range(3)])

    phase = phase0 + np.arange(length) / period
    joints = pose_body(action_angles(ACTIONS[label], phase, amplitude), body)  # (T, 13, 2)
    joints[..., 0] *= mirror
    # Fit the whole trajectory (with the head disk) into the frame: scale s pixels per unit.
    head = body["head"]
    lo = np.minimum(joints.reshape(-1, 2).min(0), joints[:, HEAD].min(0) - head)
    hi = np.maximum(joints.reshape(-1, 2).max(0), joints[:, HEAD].max(0) + head)
    extent = hi - lo
    scale = height_fraction * size / extent[1]
    width_px = max(LINE_WIDTH * scale, MIN_WIDTH_PX)
    margin = width_px / 2.0 + 1.5
    scale = min(scale, (size - 1 - 2 * margin) / max(extent[0], 1e-6))
    width_px = max(LINE_WIDTH * scale, MIN_WIDTH_PX)
    free = (size - 1 - 2 * margin) - extent * scale  # room left per axis, in pixels
    x0 = margin + place[0] * max(free[0], 0.0)
    y0 = margin + place[1] * max(free[1], 0.0)
    keypoints = np.empty_like(joints)
    keypoints[..., 0] = x0 + (joints[..., 0] - lo[0]) * scale
    keypoints[..., 1] = y0 + (hi[1] - joints[..., 1]) * scale  # y up -> rows down
    keypoints = keypoints.astype(np.float32)
    floor_y = y0 + hi[1] * scale + width_px  # just below the ground line (y = 0)
    frames, _ = render(keypoints, head * scale, width_px, colors, sky, floor, floor_y, size)
    info = {
        "label": label,
        "action": ACTIONS[label],
        "mirror": mirror < 0,
        "period": period,
        "phase": phase0,
        "amplitude": amplitude,
        "scale": scale,
        "line_width": width_px,
        "head_radius": head * scale,
        "colors": colors.tolist(),
        "sky": [int(c) for c in sky],
        "floor": [int(c) for c in floor],
        "floor_y": float(floor_y),
        "body": body,
    }
    return frames, keypoints, info


def generate(
    num_videos: int,
    length: int,
    *,
    split: str = "train",
    seed: int = 0,
    start: int = 0,
    size: int = 64,
) -> Iterator[tuple[str, np.ndarray, dict, np.ndarray]]:
    """Yield ``(video_id, frames (length, size, size, 3) uint8, attrs, keypoints (length, 13, 2)
    float32 (x, y) pixels)`` for videos ``start .. num_videos - 1``.

    ``video_id`` is ``f"stick-{split}-{i:06d}"``; video ``i`` uses ``np.random.default_rng([seed,
    s, i])`` (s = 0 for train, 1 for test). ``attrs`` (JSON): source ("stick_figures"), split,
    num_frames, fps, label (index in ``ACTIONS``), action, size, seed, index, keypoint_format
    ("xy"), joints (``JOINTS``), period (frames per cycle), scale (pixels per body unit),
    mirror, sky, floor, colors.
    """
    if length < 1 or size < 32:
        raise ValueError(f"need length >= 1 and size >= 32, got {length}, {size}")
    if num_videos < 0 or start < 0:
        raise ValueError(f"need num_videos >= 0 and start >= 0, got {num_videos}, {start}")
    if split not in _SPLIT_STREAM:
        raise ValueError(f"unknown split {split!r}: expected 'train' or 'test'")
    return _generate(num_videos, length, split, seed, start, size)


def _generate(
    num_videos: int, length: int, split: str, seed: int, start: int, size: int
) -> Iterator[tuple[str, np.ndarray, dict, np.ndarray]]:
    for i in range(start, num_videos):
        rng = np.random.default_rng([seed, _SPLIT_STREAM[split], i])
        frames, keypoints, info = stick_figure_video(rng, length, size)
        attrs = {
            "source": "stick_figures",
            "split": split,
            "num_frames": length,
            "fps": FPS,
            "label": info["label"],
            "action": info["action"],
            "size": size,
            "seed": seed,
            "index": i,
            "keypoint_format": "xy",
            "joints": list(JOINTS),
            "period": round(info["period"], 3),
            "scale": round(info["scale"], 3),
            "mirror": info["mirror"],
            "sky": info["sky"],
            "floor": info["floor"],
            "colors": info["colors"],
        }
        yield f"stick-{split}-{i:06d}", frames, attrs, keypoints


__all__ = [
    "ACTIONS",
    "FPS",
    "JOINTS",
    "LIMBS",
    "NUM_JOINTS",
    "action_angles",
    "generate",
    "pose_body",
    "render",
    "segment_coverage",
    "stick_figure_video",
]
