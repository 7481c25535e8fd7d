"""The textures dataset: determinism, the stored camera motion and object positions match the
frames, train and test photographs are disjoint, option checks, and `framecast synth
data=textures`."""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.datasets.textures import (
    CAMERA_MOTIONS,
    PHOTOS,
    TEST_PHOTOS,
    TRAIN_PHOTOS,
    generate,
    load_photo,
)


def sample(image: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Plain bilinear samples of a (H, W, C) image at float rows/columns (same shapes)."""
    h, w = image.shape[:2]
    y0 = np.clip(np.floor(ys).astype(int), 0, h - 2)
    x0 = np.clip(np.floor(xs).astype(int), 0, w - 2)
    wy, wx = (ys - y0)[..., None], (xs - x0)[..., None]
    f = image.astype(float)
    top = f[y0, x0] * (1 - wx) + f[y0, x0 + 1] * wx
    bottom = f[y0 + 1, x0] * (1 - wx) + f[y0 + 1, x0 + 1] * wx
    return top * (1 - wy) + bottom * wy


def warp_error(a: np.ndarray, b: np.ndarray, dx: float, dy: float, zoom: float = 1.0) -> float:
    """Mean absolute difference, over the interior, between frame ``b`` and frame ``a`` sampled
    where the motion model says ``b``'s pixels come from: ``(p - c) / zoom + c + (dx, dy)``."""
    size, margin = a.shape[0], 8
    c = (size - 1) / 2
    yy, xx = np.mgrid[margin : size - margin, margin : size - margin].astype(float)
    pred = sample(a, (yy - c) / zoom + c + dy, (xx - c) / zoom + c + dx)
    return float(np.abs(pred - b[margin : size - margin, margin : size - margin]).mean())


def estimate_shift(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """The (dx, dy) that best maps frame ``a`` onto ``b`` (coarse grid, then a finer one)."""
    best = (0.0, 0.0)
    for step, reach in ((0.25, 3.0), (0.05, 0.25)):
        offsets = np.arange(-reach, reach + 1e-9, step)
        cands = [(best[0] + ox, best[1] + oy) for oy in offsets for ox in offsets]
        best = min(cands, key=lambda d: warp_error(a, b, d[0], d[1]))
    return best


# ---------------------------------------------------------------- determinism, attrs


def test_generate_is_deterministic_by_seed_split_and_index():
    a = list(generate(4, 6, seed=3, size=32))
    b = list(generate(4, 6, seed=3, size=32))
    for (ia, fa, aa), (ib, fb, ab) in zip(a, b):
        assert ia == ib and aa == ab and np.array_equal(fa, fb)
    tail = list(generate(4, 6, seed=3, size=32, start=2))  # video i whatever the start is
    assert [v[0] for v in tail] == [v[0] for v in a[2:]]
    assert all(np.array_equal(x[1], y[1]) and x[2] == y[2] for x, y in zip(tail, a[2:]))
    longer = list(generate(6, 6, seed=3, size=32))  # ... or the number of videos
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(longer, a))
    other = next(iter(generate(1, 6, seed=4, size=32)))
    test = next(iter(generate(1, 6, seed=3, size=32, split="test")))
    assert not np.array_equal(other[1], a[0][1]) and not np.array_equal(test[1], a[0][1])
    assert a[0][0] == "tex-train-000000" and test[0] == "tex-test-000000"


def test_attrs_are_json_and_complete():
    video_id, frames, attrs = next(iter(generate(1, 5, seed=2, size=32, objects=[2, 2])))
    assert frames.shape == (5, 32, 32, 3) and frames.dtype == np.uint8
    assert json.loads(json.dumps(attrs)) == attrs
    assert attrs["source"] == "textures" and attrs["split"] == "train" and attrs["fps"] == 10
    assert (attrs["num_frames"], attrs["size"], attrs["seed"], attrs["index"]) == (5, 32, 2, 0)
    assert attrs["photo"] in TRAIN_PHOTOS
    assert attrs["label"] == CAMERA_MOTIONS.index(attrs["camera_motion"])
    assert len(attrs["pan"]) == 2 and attrs["zoom"] > 0
    assert np.shape(attrs["camera_centres"]) == (5, 2) and len(attrs["camera_scales"]) == 5
    assert len(attrs["objects"]) == 2
    for obj in attrs["objects"]:
        assert obj["shape"] in ("disc", "blob") and obj["radius"] > 0
        assert np.shape(obj["centres"]) == (5, 2) and len(obj["velocity"]) == 2


def test_gray_frames_and_gray_photos():
    _, frames, _ = next(iter(generate(1, 3, size=32, channels=1)))
    assert frames.shape == (3, 32, 32, 1)
    for _, frames, attrs in generate(12, 2, size=32, objects=[0, 0]):
        if load_photo(attrs["photo"], 3).std(axis=2).max() == 0:  # a gray photograph
            assert (frames == frames[..., :1]).all()  # stays R = G = B


def test_the_camera_stays_inside_the_photo():
    for split in ("train", "test"):
        for _, _, attrs in generate(30, 20, size=32, split=split, max_pan=3.0, max_zoom=0.04):
            h, w = load_photo(attrs["photo"], 1).shape[:2]
            centres = np.asarray(attrs["camera_centres"])
            half = np.asarray(attrs["camera_scales"])[:, None] * (32 - 1) / 2
            assert (centres - half >= -0.5 - 1e-6).all()
            assert (centres + half <= np.array([w, h]) - 0.5 + 1e-6).all()


# ---------------------------------------------------------------- the motion is what is stored


def test_pan_shifts_each_frame_by_the_stored_velocity():
    seen = 0
    for split in ("train", "test"):
        videos = generate(4, 4, seed=3, split=split, max_zoom=0.0, objects=[0, 0])
        for _, frames, attrs in videos:
            assert attrs["camera_motion"] == "pan" and attrs["zoom"] == 1.0
            dx, dy = attrs["pan"]
            assert 0.2 * 2.0 - 1e-6 <= np.hypot(dx, dy) <= 2.0 + 1e-6  # U(0.2, 1) x max_pan
            scales = np.asarray(attrs["camera_scales"])
            assert np.allclose(scales, scales[0])
            # the camera moves by pan frame pixels a frame, so the picture by -pan
            steps = np.diff(np.asarray(attrs["camera_centres"]), axis=0) / scales[0]
            np.testing.assert_allclose(steps, np.tile([dx, dy], (3, 1)), atol=0.01)
            for t in range(3):
                a, b = frames[t], frames[t + 1]
                right = warp_error(a, b, dx, dy)  # interpolation error only
                assert right < 0.7 * warp_error(a, b, 0.0, 0.0)
                assert right < 0.5 * warp_error(a, b, -dx, -dy)
            ex, ey = estimate_shift(frames[1], frames[2])
            assert abs(ex - dx) <= 0.3 and abs(ey - dy) <= 0.3, (attrs["photo"], (ex, ey))
            seen += 1
    assert seen == 8


def test_zoom_scales_each_frame_by_the_stored_factor():
    zooms = []
    for _, frames, attrs in generate(6, 4, seed=3, max_pan=0.0, max_zoom=0.05, objects=[0, 0]):
        assert attrs["camera_motion"] == "zoom" and attrs["pan"] == [0.0, 0.0]
        z = attrs["zoom"]
        assert 1.05**-1 - 1e-6 <= z <= 1.05 + 1e-6 and abs(np.log(z)) >= 0.2 * np.log(1.05) - 1e-6
        scales = np.asarray(attrs["camera_scales"])
        np.testing.assert_allclose(scales[1:] / scales[:-1], 1 / z, rtol=1e-4)
        centres = np.asarray(attrs["camera_centres"])
        np.testing.assert_allclose(centres, np.tile(centres[0], (4, 1)), atol=1e-3)
        grid = np.arange(0.94, 1.06, 0.0025)
        errors = [warp_error(frames[1], frames[2], 0.0, 0.0, g) for g in grid]
        assert abs(grid[int(np.argmin(errors))] - z) <= 0.005, attrs["photo"]
        assert warp_error(frames[0], frames[3], 0.0, 0.0, z**3) < 0.5 * warp_error(
            frames[0], frames[3], 0.0, 0.0, 1.0
        )
        zooms.append(z)
    assert min(zooms) < 1 < max(zooms)  # in and out


def test_pan_and_zoom_together_follow_one_map_per_frame():
    videos = generate(10, 4, seed=5, max_pan=2.0, max_zoom=0.04, objects=[0, 0])
    both = [(f, a) for _, f, a in videos if a["camera_motion"] == "pan_zoom"]
    assert both
    for frames, attrs in both:
        dx, dy = attrs["pan"]
        z = attrs["zoom"]
        a, b = frames[1], frames[2]
        right = warp_error(a, b, dx, dy, z)
        for wrong in ((dx, dy, 1.0), (dx, dy, 1 / z), (0.0, 0.0, z), (-dx, -dy, z)):
            assert right < warp_error(a, b, *wrong)
        grid = np.arange(0.94, 1.06, 0.0025)
        errors = [warp_error(a, b, dx, dy, g) for g in grid]
        assert abs(grid[int(np.argmin(errors))] - z) <= 0.005, attrs["photo"]


def test_camera_motions_follow_the_options():
    motions = {a["camera_motion"] for _, _, a in generate(30, 2, size=32)}
    assert motions == {"pan", "zoom", "pan_zoom"}
    still = list(generate(3, 3, size=32, max_pan=0.0, max_zoom=0.0, objects=[0, 0]))
    for _, frames, attrs in still:
        assert attrs["camera_motion"] == "static" and attrs["label"] == 3
        assert (frames == frames[0]).all()


# ---------------------------------------------------------------- objects


def test_objects_are_where_their_stored_positions_say():
    checked = 0
    for split in ("train", "test"):
        plain = list(generate(8, 6, seed=1, split=split, objects=[0, 0]))
        single = list(generate(8, 6, seed=1, split=split, objects=[1, 1]))
        for (_, bg, a0), (_, fg, a1) in zip(plain, single):
            # the objects draw from their own stream: the background is unchanged
            assert a0["photo"] == a1["photo"] and a0["camera_centres"] == a1["camera_centres"]
            (obj,) = a1["objects"]
            assert obj["photo"] != a1["photo"] and obj["photo"] in PHOTOS
            r = obj["radius"]
            assert 0.1 * 64 - 1e-3 <= r <= 0.2 * 64 + 1e-3
            centres = np.asarray(obj["centres"])  # (T, 2) as (x, y)
            mask = (fg != bg).any(axis=-1)  # (T, H, W): the object's pixels
            ys, xs = np.indices(mask.shape[1:])
            for t in range(len(centres)):
                cx, cy = centres[t]
                dist = np.hypot(xs - cx, ys - cy)
                assert not mask[t][dist > 1.3 * r + 1.0].any()  # nothing outside its reach
                inner = dist < 0.7 * r - 1.0  # a blob is at least 0.7 r from its centre
                assert mask[t][inner].mean() > 0.9
                my, mx = ys[mask[t]].mean(), xs[mask[t]].mean()
                assert abs(mx - cx) < 1.0 and abs(my - cy) < 1.0
                if obj["shape"] == "disc":  # partly covered pixels: distance < r + 1/2
                    area = mask[t].sum()  # lattice counts stray O(r) from the areas
                    assert np.pi * (r - 0.5) ** 2 - 2 * r <= area <= np.pi * (r + 0.5) ** 2 + 2 * r
            # linear motion, reflected at the edges: every step is +-velocity per axis
            steps = np.abs(np.diff(centres, axis=0))
            v = np.abs(np.asarray(obj["velocity"]))
            assert (steps <= v + 1e-3).all()
            assert np.isclose(steps, v, atol=1e-3).mean() > 0.5
            checked += 1
    assert checked == 16


def test_object_count_range():
    counts = {len(a["objects"]) for _, _, a in generate(30, 2, size=32)}
    assert counts == {0, 1, 2}
    assert all(len(a["objects"]) == 3 for _, _, a in generate(4, 2, size=32, objects=[3, 3]))


# ---------------------------------------------------------------- photographs and splits


def test_train_and_test_use_disjoint_photographs():
    assert set(TRAIN_PHOTOS).isdisjoint(TEST_PHOTOS)
    assert set(TRAIN_PHOTOS) | set(TEST_PHOTOS) == set(PHOTOS)
    assert len(TRAIN_PHOTOS) >= 2 and len(TEST_PHOTOS) >= 2  # objects need another photo
    used = {"train": set(), "test": set()}
    for split in used:
        for _, _, attrs in generate(40, 2, size=32, split=split, objects=[2, 2]):
            used[split] |= {attrs["photo"], *(o["photo"] for o in attrs["objects"])}
    assert used["train"] == set(TRAIN_PHOTOS) and used["test"] == set(TEST_PHOTOS)


def test_photographs_are_bundled_and_freely_licensed():
    folder = importlib.resources.files("skimage") / "data"
    for name, info in PHOTOS.items():
        assert (folder / name).is_file(), name
        assert info["licence"] in ("CC0", "public domain") and info["source"]
        photo = load_photo(name, 3)
        assert photo.dtype == np.uint8 and min(photo.shape[:2]) >= 256


# ---------------------------------------------------------------- bad options


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"size": 8}, "size=8"),
        ({"channels": 2}, "channels=2"),
        ({"max_pan": -1.0}, "max_pan=-1.0"),
        ({"max_zoom": 1.5}, "max_zoom=1.5"),
        ({"objects": [2, 1]}, r"objects=\[2, 1\]"),
        ({"objects": [0, 9]}, r"objects=\[0, 9\]"),
        ({"objects": [1]}, r"objects=\[1\]"),
        ({"object_radius": [0.2, 0.1]}, "object_radius="),
        ({"object_radius": [0.1, 0.4]}, "object_radius=.*does not fit"),
        ({"split": "val"}, "split='val'"),
    ],
)
def test_bad_options_name_the_key(options, key):
    with pytest.raises(ValueError, match=key):
        generate(1, 4, **options)


# ---------------------------------------------------------------- framecast synth data=textures


def test_synth_writes_a_textures_store(tmp_path: Path, capsys):
    from pipeline.cli import main
    from pipeline.io.store import FrameStore

    store = tmp_path / "tex.zarr"
    args = ["synth", "data=textures", "synth.num_videos=4", "synth.length=3", "data.size=16"]
    assert main([*args, f"store={store}", "data.test_fraction=0.5"]) == 0
    s = FrameStore.open(str(store))
    assert s.video_ids() == [f"tex-{sp}-{i:06d}" for sp in ("test", "train") for i in (0, 1)]
    for video_id in s.video_ids():
        attrs = s.attrs(video_id)
        split = attrs["split"]
        assert attrs["source"] == "textures" and video_id.startswith(f"tex-{split}-")
        assert attrs["photo"] in (TEST_PHOTOS if split == "test" else TRAIN_PHOTOS)
        for key in ("pan", "zoom", "objects", "camera_motion", "fps", "num_frames"):
            assert key in attrs
    _, frames, attrs = list(generate(2, 3, seed=0, size=16, split="test"))[1]
    assert np.array_equal(s.frames("tex-test-000001"), frames)
    assert s.attrs("tex-test-000001")["pan"] == attrs["pan"]
    assert main([*args, f"store={tmp_path / 'gray.zarr'}", "data.channels=1"]) == 0
    assert FrameStore.open(str(tmp_path / "gray.zarr")).frames("tex-train-000000").shape[-1] == 1
    capsys.readouterr()
    bad = f"store={tmp_path / 'bad.zarr'}"
    for option, key in (
        ("data.max_zoom=-0.1", "data.max_zoom"),
        ("data.objects=[3,1]", "data.objects"),
        ("data.object_radius=[0.1,0.5]", "data.object_radius"),
        ("data.channels=4", "data.channels"),
        ("data.test_fraction=1.0", "data.test_fraction"),
    ):
        assert main([*args, bad, option]) == 2
        assert key in capsys.readouterr().err
    assert not (tmp_path / "bad.zarr").exists()
