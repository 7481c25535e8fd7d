"""Textures: natural-looking videos made from real photographs, with a known camera motion.

Nothing is downloaded: the photographs are the ones scikit-image's wheel bundles in
``skimage/data/`` (read as files, never through ``skimage.data``, which may fetch). Only
photographs that their docstrings (``skimage/data/_fetchers.py``) say are public domain or CC0
are used (``PHOTOS``); the photographs are split, so the test split's videos show photographs
that no training video shows (``TRAIN_PHOTOS``, ``TEST_PHOTOS``; object textures too).

A video is a ``size`` x ``size`` window moving over one photograph, sampled bilinearly:

- the photograph is first reduced once (Lanczos) to a short side of ``WORKING_SCALE * size``
  pixels (never enlarged); "photo pixels" below are pixels of this working copy;
- the camera: window centre ``c_t`` and scale ``s_t`` (photo pixels per frame pixel). Frame
  pixel (x, y) (x = column, y = row, pixel centres 0 .. size - 1) shows the photo at
  ``c_t + s_t * ((x, y) - (size - 1) / 2)``; ``s_0`` is uniform in ``SCALE`` (less where the
  whole motion would not fit the photo), the start where the whole motion stays inside it;
- the motion, one of ``CAMERA_MOTIONS`` (the video's label): a pan of constant velocity
  ``pan = (dx, dy)`` frame pixels per frame (speed U(0.2, 1) * ``max_pan``, direction uniform:
  the camera moves by ``pan``, so the picture moves by ``-pan``) and/or a zoom ``z`` per frame
  (``log z`` U(0.2, 1) * ``log(1 + max_zoom)``, either sign; ``z > 1`` zooms in:
  ``s_{t+1} = s_t / z``), with ``c_{t+1} = c_t + s_t * pan``. So every frame follows from the
  previous one by the same map: frame ``t+1`` at (x, y) (relative to the frame centre) shows
  what frame ``t`` shows at ``(x, y) / z + pan``;
- 0 to 2 objects (``objects``): a disc or a blob (a radius modulated by the 2nd and 3rd angular
  harmonics) cut out of another photograph of the same split, the texture fixed to the object,
  moving linearly at U(0.02, 0.06) * size pixels per frame in a uniform direction and bouncing
  off the frame's edges (it stays inside with a one-pixel margin), composited over the
  background with an anti-aliased edge, alpha = clip(R(angle) + 1/2 - distance, 0, 1).

Positions in this dataset are (x, y) pixels, as the pan's (dx, dy) (the stick figures'
convention; shapes and Moving MNIST use (y, x)). Video ``i`` of ``generate`` depends only on
``(seed, split, i)`` and the options: its camera draws from ``default_rng([seed, s, i, 0])`` and
its objects from ``default_rng([seed, s, i, 1])`` (s = 0 for train, 1 for test), so changing
the objects leaves the background as it was.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
from collections.abc import Iterator

import numpy as np
from PIL import Image

FPS = 10
# Bundled photographs of scikit-image (skimage/data/), each with its split, source and licence
# as skimage/data/_fetchers.py states them. Others in the wheel are left out: moon.png and
# motorcycle_left.png state no licence, coins.png only "no known copyright restrictions", the
# rest are not photographs of scenes (microscopy, retina, clip art, scans, logos).
PHOTOS: dict[str, dict[str, str]] = {
    "astronaut.png": {
        "split": "train",
        "source": "NASA Great Images: astronaut Eileen Collins (https://flic.kr/p/r9qvLn)",
        "licence": "public domain",
    },
    "coffee.png": {
        "split": "train",
        "source": "a coffee cup, photograph by Rachel Michetti (Pikolo Espresso Bar)",
        "licence": "CC0",
    },
    "hubble_deep_field.jpg": {
        "split": "train",
        "source": "NASA, Hubble eXtreme Deep Field (hubblesite.org, release 2012-37)",
        "licence": "public domain",
    },
    "camera.png": {
        "split": "train",
        "source": "a photographer with a camera, photograph by Lav Varshney (gray)",
        "licence": "CC0",
    },
    "brick.png": {
        "split": "train",
        "source": "CC0Textures Bricks25, perspective-corrected (gray)",
        "licence": "CC0",
    },
    "grass.png": {
        "split": "train",
        "source": "DeviantArt linolafett, Grass 01 (gray)",
        "licence": "CC0",
    },
    "chelsea.png": {
        "split": "test",
        "source": "Chelsea the cat, photograph by Stefan van der Walt",
        "licence": "CC0",
    },
    "rocket.jpg": {
        "split": "test",
        "source": "SpaceX: Falcon 9 launching DSCOVR (flickr spacexphotos/16511594820)",
        "licence": "public domain",
    },
    "gravel.png": {
        "split": "test",
        "source": "CC0Textures Gravel04 (gray)",
        "licence": "CC0",
    },
}
TRAIN_PHOTOS: tuple[str, ...] = tuple(n for n, p in PHOTOS.items() if p["split"] == "train")
TEST_PHOTOS: tuple[str, ...] = tuple(n for n, p in PHOTOS.items() if p["split"] == "test")
SPLIT_PHOTOS = {"train": TRAIN_PHOTOS, "test": TEST_PHOTOS}
CAMERA_MOTIONS: tuple[str, ...] = ("pan", "zoom", "pan_zoom", "static")  # label = index
OBJECT_SHAPES: tuple[str, ...] = ("disc", "blob")
WORKING_SCALE = 4  # working copy of a photo: short side WORKING_SCALE * size (if it has that)
SCALE: tuple[float, float] = (0.75, 1.5)  # range of s_0, photo pixels per frame pixel
OBJECT_SPEED: tuple[float, float] = (0.02, 0.06)  # objects' speed range, x size per frame
BLOB_AMPLITUDE = 0.15  # a blob's radius is r * (1 + a2 cos 2(th - p2) + a3 cos 3(th - p3))
MAX_OBJECTS = 4
_SPLIT_STREAM = {"train": 0, "test": 1}


# ---------------------------------------------------------------- options


def check_options(
    size: int,
    channels: int,
    max_pan: float,
    max_zoom: float,
    objects: tuple[int, int] | list[int],
    object_radius: tuple[float, float] | list[float],
) -> tuple[tuple[int, int], tuple[float, float]]:
    """Validate the options; returns ``(objects, object_radius)`` as tuples.

    Each ValueError's message starts with ``KEY=value``, so a caller can prefix its config
    group (``data.``). The largest blob (radius ``max * size * (1 + 2 * BLOB_AMPLITUDE)``) must
    leave its centre room to move inside the frame with a one-pixel margin.
    """
    if size < 16:
        raise ValueError(f"size={size}: frames must be at least 16x16")
    if channels not in (1, 3):
        raise ValueError(f"channels={channels}: use 1 (gray) or 3 (RGB)")
    if not (math.isfinite(max_pan) and max_pan >= 0):
        raise ValueError(f"max_pan={max_pan}: must be >= 0 (frame pixels per frame)")
    if not (math.isfinite(max_zoom) and 0 <= max_zoom < 1):
        raise ValueError(f"max_zoom={max_zoom}: must be in [0, 1) (relative scale per frame)")
    counts = list(objects)
    if len(counts) != 2 or not all(isinstance(c, int) for c in counts):
        raise ValueError(f"objects={counts}: must be [min, max], integers")
    if not 0 <= counts[0] <= counts[1] <= MAX_OBJECTS:
        raise ValueError(f"objects={counts}: need 0 <= min <= max <= {MAX_OBJECTS}")
    radii = [float(r) for r in object_radius]
    if len(radii) != 2:
        raise ValueError(f"object_radius={radii}: must be [min, max], fractions of size")
    if not 0 < radii[0] <= radii[1]:
        raise ValueError(f"object_radius={radii}: need 0 < min <= max")
    limit = ((size - 1) / 2 - 1) / (size * (1 + 2 * BLOB_AMPLITUDE))
    if radii[1] >= limit:
        raise ValueError(
            f"object_radius={radii}: max does not fit a {size}x{size} frame "
            f"(need max < {limit:.4f}: a blob reaches {1 + 2 * BLOB_AMPLITUDE:g} x the radius)"
        )
    return (counts[0], counts[1]), (radii[0], radii[1])


# ---------------------------------------------------------------- photographs


@functools.lru_cache(maxsize=32)
def load_photo(name: str, channels: int = 3, short_side: int | None = None) -> np.ndarray:
    """The bundled photograph ``name`` as (H, W, channels) uint8, read from scikit-image's
    ``skimage/data/`` with PIL (gray photos are repeated to RGB, RGB ones converted to luma
    for ``channels=1``), reduced (Lanczos) to ``short_side`` if it is larger. Cached: a
    process loads each photo once per size."""
    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}: expected one of {tuple(PHOTOS)}")
    try:
        path = importlib.resources.files("skimage") / "data" / name
    except ModuleNotFoundError:
        raise RuntimeError(
            "data=textures needs scikit-image's bundled photographs: pip install scikit-image"
        ) from None
    with path.open("rb") as f, Image.open(f) as im:
        im = im.convert("RGB" if channels == 3 else "L")
        if short_side is not None and min(im.size) > short_side:
            w, h = im.size
            k = short_side / min(w, h)
            im = im.resize((max(2, round(w * k)), max(2, round(h * k))), Image.Resampling.LANCZOS)
        arr = np.asarray(im, dtype=np.uint8)
    arr = arr.reshape(arr.shape[0], arr.shape[1], channels)
    arr.setflags(write=False)
    return arr


def to_original(name: str, size: int, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Working-copy pixel coordinates (..., 2) (x, y) of photo ``name`` at frame size ``size``
    in the original photo's pixels, and the factors (fx, fy) (original pixels per working
    pixel): pixel centres map as ``(p + 1/2) * f - 1/2``, as the resize maps them."""
    oh, ow = load_photo(name, 1).shape[:2]
    wh, ww = load_photo(name, 1, WORKING_SCALE * size).shape[:2]
    factor = np.array([ow / ww, oh / wh])
    return (np.asarray(points) + 0.5) * factor - 0.5, factor


# ---------------------------------------------------------------- sampling


@functools.lru_cache(maxsize=32)
def photo_planes(name: str, channels: int = 3, short_side: int | None = None) -> np.ndarray:
    """``load_photo`` as read-only float32 planes (channels, H, W): the layout ``bilinear``
    samples fastest (its weights then broadcast over whole rows, not over 3 channels)."""
    planes = np.ascontiguousarray(
        load_photo(name, channels, short_side).transpose(2, 0, 1), dtype=np.float32
    )
    planes.setflags(write=False)
    return planes


def bilinear(planes: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Bilinear samples of an image given as ``planes`` (C, H, W) at rows ``ys`` (T, h) and
    columns ``xs`` (T, w): (C, T, h, w) float32, sample [:, t, i, j] at (ys[t, i], xs[t, j])
    (pixel centres at integers).

    A pan and a zoom keep the axes, so the map is separable: the four neighbours' flat indices
    are built by broadcasting and gathered at once for all frames, and the weights of a row or
    a column broadcast. Coordinates are clipped to the image (edge pixels repeat).
    """
    c, h, w = planes.shape
    if h < 2 or w < 2:
        raise ValueError(f"image of {h}x{w} pixels is too small to interpolate")
    ys = np.clip(np.asarray(ys, dtype=np.float64), 0, h - 1)
    xs = np.clip(np.asarray(xs, dtype=np.float64), 0, w - 1)
    y0 = np.minimum(ys.astype(np.intp), h - 2)  # floor: the coordinates are >= 0
    x0 = np.minimum(xs.astype(np.intp), w - 2)
    wy = (ys - y0).astype(np.float32)[:, :, None]
    wx = (xs - x0).astype(np.float32)[:, None, :]
    flat = planes.reshape(c, h * w)
    if flat.dtype != np.float32:
        flat = flat.astype(np.float32)
    index = (y0 * w)[:, :, None] + x0[:, None, :]  # (T, h, w)
    top = np.take(flat, index, axis=1)  # in place from here: top += wx * (right - top)
    other = np.take(flat, index + 1, axis=1)
    other -= top
    other *= wx
    top += other
    bottom = np.take(flat, index + w, axis=1)
    other = np.take(flat, index + w + 1, axis=1)
    other -= bottom
    other *= wx
    bottom += other
    bottom -= top
    bottom *= wy
    top += bottom
    return top


# ---------------------------------------------------------------- camera


def camera_path(
    length: int, pan: tuple[float, float], zoom: float
) -> tuple[np.ndarray, np.ndarray]:
    """Relative camera path for ``s_0 = 1``, ``c_0 = 0``: offsets (length, 2) (x, y) of the
    window centre and scales (length,): ``r_t = zoom ** -t``, ``o_{t+1} = o_t + r_t * pan``."""
    r = np.power(float(zoom), -np.arange(length, dtype=np.float64))
    steps = np.concatenate([[0.0], np.cumsum(r[:-1])])  # sum_{k<t} r_k
    return steps[:, None] * np.asarray(pan, dtype=np.float64)[None, :], r


def draw_camera(
    rng: np.random.Generator,
    length: int,
    size: int,
    photo_shape: tuple[int, int],
    max_pan: float,
    max_zoom: float,
) -> dict:
    """The camera of one video: ``{"motion", "pan" (dx, dy), "zoom", "centres" (length, 2)
    (x, y) and "scales" (length,) in working-photo pixels}``, the whole path inside the photo.

    Draws, in order: the motion (among those ``max_pan`` and ``max_zoom`` allow), the pan's
    speed and direction, the zoom's size and sign, ``s_0``, then the start (x, y).
    """
    allowed = [m for m, ok in (("pan", max_pan > 0), ("zoom", max_zoom > 0)) if ok]
    allowed = allowed + ["pan_zoom"] if len(allowed) == 2 else allowed or ["static"]
    motion = allowed[int(rng.integers(len(allowed)))]
    speed = max_pan * float(rng.uniform(0.2, 1.0))
    angle = float(rng.uniform(0.0, 2.0 * np.pi))
    log_zoom = math.log1p(max_zoom) * float(rng.uniform(0.2, 1.0))
    if rng.random() < 0.5:
        log_zoom = -log_zoom
    pan = (speed * math.cos(angle), speed * math.sin(angle)) if "pan" in motion else (0.0, 0.0)
    zoom = math.exp(log_zoom) if "zoom" in motion else 1.0
    offsets, r = camera_path(length, pan, zoom)
    half = (size - 1) / 2.0
    lo = (offsets - half * r[:, None]).min(axis=0)  # the window's extent at s_0 = 1, (x, y)
    hi = (offsets + half * r[:, None]).max(axis=0)
    ph, pw = photo_shape
    room = np.array([pw - 1, ph - 1], dtype=np.float64)
    s_fit = float(np.min(room / (hi - lo)))  # the largest s_0 for which the path fits
    s0 = float(rng.uniform(*SCALE))
    s0 = min(s0, s_fit)
    first, last = -s0 * lo, room - s0 * hi  # the start's range per axis (x, y)
    last = np.maximum(last, first)  # equal, up to rounding, where s_0 = s_fit
    start = np.array([rng.uniform(first[k], last[k]) for k in range(2)])
    centres = start[None, :] + s0 * offsets
    return {
        "motion": motion,
        "pan": pan,
        "zoom": zoom,
        "centres": centres,
        "scales": s0 * r,
    }


def render_window(
    planes: np.ndarray, centres: np.ndarray, scales: np.ndarray, size: int
) -> np.ndarray:
    """Frames (C, T, size, size) float32: the photo ``planes`` (C, H, W; working pixels) seen
    through windows centred at ``centres`` (T, 2) (x, y), ``scales`` (T,) photo pixels per
    frame pixel."""
    u = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    xs = centres[:, 0:1] + scales[:, None] * u[None, :]
    ys = centres[:, 1:2] + scales[:, None] * u[None, :]
    return bilinear(planes, ys, xs)


# ---------------------------------------------------------------- objects


def bounce(start: float, velocity: float, lo: float, hi: float, length: int) -> np.ndarray:
    """Positions (length,) of a point starting at ``start`` in [lo, hi], moving at
    ``velocity`` per frame and reflected at both ends (a triangle wave)."""
    span = hi - lo
    if span <= 0:
        return np.full(length, (lo + hi) / 2.0)
    free = start - lo + velocity * np.arange(length, dtype=np.float64)
    folded = np.mod(free, 2.0 * span)
    return lo + span - np.abs(folded - span)


def object_alpha(
    dx: np.ndarray, dy: np.ndarray, radius: float, harmonics: np.ndarray
) -> np.ndarray:
    """Anti-aliased coverage float32 of an object at pixel offsets ``dx`` (T, 1, w) and ``dy``
    (T, h, 1) from its centre: ``clip(R(angle) + 1/2 - distance, 0, 1)`` (T, h, w) with
    ``R(angle) = radius * (1 + sum_k a_k cos(k (angle - p_k)))`` for ``harmonics`` rows
    (k, a_k, p_k) (none: a disc)."""
    dx = np.asarray(dx, dtype=np.float32)
    dy = np.asarray(dy, dtype=np.float32)
    dist = np.sqrt(dx * dx + dy * dy)
    edge = np.float32(radius + 0.5)
    if len(harmonics):
        angle = np.arctan2(dy, dx)
        modulation = np.ones_like(angle)
        for k, a, p in harmonics:
            modulation += np.float32(a) * np.cos(np.float32(k) * (angle - np.float32(p)))
        edge = np.float32(radius) * modulation + np.float32(0.5)
    return np.clip(edge - dist, 0.0, 1.0)


def draw_objects(
    rng: np.random.Generator,
    length: int,
    size: int,
    photos: tuple[str, ...],
    background: str,
    counts: tuple[int, int],
    radius_range: tuple[float, float],
) -> list[dict]:
    """The moving objects of one video. Per object, drawn in order: its shape, radius (uniform
    in ``radius_range`` * size), blob harmonics (amplitudes U(0, BLOB_AMPLITUDE), phases), the
    photograph its texture comes from (one of ``photos`` other than ``background``), the
    texture patch's centre (u, v in [0, 1] of the room), its start (x, y) and its velocity."""
    count = int(rng.integers(counts[0], counts[1] + 1))
    others = [p for p in photos if p != background] or list(photos)
    out = []
    for _ in range(count):
        shape = OBJECT_SHAPES[int(rng.integers(len(OBJECT_SHAPES)))]
        radius = size * float(rng.uniform(*radius_range))
        amps = rng.uniform(0.0, BLOB_AMPLITUDE, 2)
        phases = rng.uniform(0.0, 2.0 * np.pi, 2)
        harmonics = (
            np.array([[2, amps[0], phases[0]], [3, amps[1], phases[1]]])
            if shape == "blob"
            else np.zeros((0, 3))
        )
        reach = radius * (1.0 + harmonics[:, 1].sum())  # farthest edge from the centre
        texture = others[int(rng.integers(len(others)))]
        patch = rng.random(2)  # where in the texture photo the patch is cut, (u, v)
        lo, hi = reach + 1.0, size - 2.0 - reach  # the centre's room: one-pixel margin
        start = rng.uniform(lo, hi, 2)
        speed = size * float(rng.uniform(*OBJECT_SPEED))
        angle = float(rng.uniform(0.0, 2.0 * np.pi))
        velocity = (speed * math.cos(angle), speed * math.sin(angle))
        centres = np.stack(
            [bounce(start[k], velocity[k], lo, hi, length) for k in range(2)], axis=1
        )
        out.append(
            {
                "shape": shape,
                "radius": radius,
                "reach": reach,
                "harmonics": harmonics,
                "photo": texture,
                "patch": patch,
                "velocity": velocity,
                "centres": centres,
            }
        )
    return out


def composite_object(frames: np.ndarray, obj: dict, texture: np.ndarray, size: int) -> None:
    """Blend one object (a ``draw_objects`` entry) into ``frames`` (C, T, size, size) float32
    in place. Its texture is the patch of ``texture`` (planes (C, H, W)) around ``patch``, at
    one photo pixel per frame pixel, moving with the object. Only a square of side
    ``2 * ceil(reach) + 4`` around the object is computed per frame."""
    _, ph, pw = texture.shape
    margin = obj["reach"] + 1.0
    u, v = obj["patch"]
    px = margin + u * max(pw - 1 - 2 * margin, 0.0)  # patch centre in the texture photo
    py = margin + v * max(ph - 1 - 2 * margin, 0.0)
    centres = obj["centres"]
    side = min(2 * math.ceil(obj["reach"]) + 4, size)
    corner = np.clip(np.floor(centres - obj["reach"]) - 1, 0, size - side).astype(np.intp)
    grid = np.arange(side)
    cols = corner[:, 0:1] + grid[None, :]  # (T, side) frame pixels of each frame's square
    rows = corner[:, 1:2] + grid[None, :]
    dx = cols - centres[:, 0:1]
    dy = rows - centres[:, 1:2]
    patch = bilinear(texture, py + dy, px + dx)  # (C, T, side, side)
    alpha = object_alpha(dx[:, None, :], dy[:, :, None], obj["radius"], obj["harmonics"])
    t = np.arange(len(centres))[:, None, None]
    where = (slice(None), t, rows[:, :, None], cols[:, None, :])
    under = frames[where]
    frames[where] = under + alpha * (patch - under)


# ---------------------------------------------------------------- videos


def textures_video(
    rng_camera: np.random.Generator,
    rng_objects: np.random.Generator,
    length: int,
    *,
    split: str = "train",
    size: int = 64,
    channels: int = 3,
    max_pan: float = 2.0,
    max_zoom: float = 0.02,
    objects: tuple[int, int] = (0, 2),
    object_radius: tuple[float, float] = (0.1, 0.2),
) -> tuple[np.ndarray, dict]:
    """One video: frames (length, size, size, channels) uint8 and its info (JSON-ready):
    photo, camera_motion, label, pan [dx, dy], zoom, camera_centres [[x, y] per frame] and
    camera_scales (original-photo pixels; per frame pixel), objects [{shape, radius, photo,
    velocity [vx, vy], centres [[x, y] per frame]}]. The photograph is drawn first from
    ``rng_camera``, then the camera (``draw_camera``); the objects from ``rng_objects``."""
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    photos = SPLIT_PHOTOS[split]
    name = photos[int(rng_camera.integers(len(photos)))]
    working = WORKING_SCALE * size
    planes = photo_planes(name, channels, working)
    cam = draw_camera(rng_camera, length, size, planes.shape[1:], max_pan, max_zoom)
    frames = render_window(planes, cam["centres"], cam["scales"], size)
    objs = draw_objects(rng_objects, length, size, photos, name, objects, object_radius)
    for obj in objs:
        composite_object(frames, obj, photo_planes(obj["photo"], channels, working), size)
    np.rint(frames, out=frames)
    np.clip(frames, 0, 255, out=frames)
    clip = np.ascontiguousarray(frames.transpose(1, 2, 3, 0), dtype=np.uint8)
    centres, factor = to_original(name, size, cam["centres"])
    info = {
        "photo": name,
        "camera_motion": cam["motion"],
        "label": CAMERA_MOTIONS.index(cam["motion"]),
        "pan": [round(v, 6) for v in cam["pan"]],
        "zoom": round(cam["zoom"], 8),
        "camera_centres": np.round(centres, 3).tolist(),
        "camera_scales": np.round(cam["scales"] * factor[0], 5).tolist(),
        "objects": [
            {
                "shape": o["shape"],
                "radius": round(o["radius"], 4),
                "photo": o["photo"],
                "velocity": [round(v, 6) for v in o["velocity"]],
                "centres": np.round(o["centres"], 4).tolist(),
            }
            for o in objs
        ],
    }
    return clip, info


def generate(
    num_videos: int,
    length: int,
    *,
    size: int = 64,
    split: str = "train",
    seed: int = 0,
    start: int = 0,
    channels: int = 3,
    max_pan: float = 2.0,
    max_zoom: float = 0.02,
    objects: tuple[int, int] | list[int] = (0, 2),
    object_radius: tuple[float, float] | list[float] = (0.1, 0.2),
) -> Iterator[tuple[str, np.ndarray, dict]]:
    """Yield ``(video_id, frames (length, size, size, channels) uint8, attrs)`` for videos
    ``start .. num_videos - 1``.

    ``video_id`` is ``f"tex-{split}-{i:06d}"``; video ``i`` depends only on ``(seed, split, i)``
    and the options (see the module docstring). Train videos show ``TRAIN_PHOTOS``, test
    videos ``TEST_PHOTOS``. ``attrs`` (JSON): source ("textures"), split, num_frames, fps,
    size, channels, seed, index, and ``textures_video``'s info: photo, camera_motion, label
    (index in ``CAMERA_MOTIONS``), pan [dx, dy] (frame pixels per frame, the camera's: the
    picture moves by -pan), zoom (per frame, > 1 zooms in), camera_centres / camera_scales,
    objects (shape, radius, photo, velocity, centres [[x, y] per frame] in frame pixels).
    Options are checked by ``check_options`` (ValueError naming the key).
    """
    if length < 1:
        raise ValueError(f"length={length}: must be >= 1")
    if num_videos < 0 or start < 0:
        raise ValueError(f"need num_videos >= 0 and start >= 0, got {num_videos}, {start}")
    if split not in _SPLIT_STREAM:
        raise ValueError(f"split={split!r}: expected 'train' or 'test'")
    counts, radii = check_options(size, channels, max_pan, max_zoom, objects, object_radius)
    options = {
        "size": size,
        "channels": channels,
        "max_pan": float(max_pan),
        "max_zoom": float(max_zoom),
        "objects": counts,
        "object_radius": radii,
    }
    return _generate(num_videos, length, split, seed, start, options)


def _generate(
    num_videos: int, length: int, split: str, seed: int, start: int, options: dict
) -> Iterator[tuple[str, np.ndarray, dict]]:
    s = _SPLIT_STREAM[split]
    for i in range(start, num_videos):
        rng_camera = np.random.default_rng([seed, s, i, 0])
        rng_objects = np.random.default_rng([seed, s, i, 1])
        frames, info = textures_video(rng_camera, rng_objects, length, split=split, **options)
        attrs = {
            "source": "textures",
            "split": split,
            "num_frames": length,
            "fps": FPS,
            "size": options["size"],
            "channels": options["channels"],
            "seed": seed,
            "index": i,
            **info,
        }
        yield f"tex-{split}-{i:06d}", frames, attrs


__all__ = [
    "CAMERA_MOTIONS",
    "FPS",
    "OBJECT_SHAPES",
    "PHOTOS",
    "TEST_PHOTOS",
    "TRAIN_PHOTOS",
    "bilinear",
    "camera_path",
    "check_options",
    "generate",
    "load_photo",
    "object_alpha",
    "photo_planes",
    "render_window",
    "textures_video",
    "to_original",
]
