"""The shape-motion dataset: labels match the motions seen in the frames, determinism,
shape and colour attributes, anti-aliasing, and `framecast synth data=shapes`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.datasets.shapes import (
    MOTIONS,
    SHAPES,
    coverage,
    generate,
    shapes_video,
    trajectory,
)

LINEAR_ANGLE = {"left_right": 0.0, "up_down": 90.0, "diagonal_down": 45.0, "diagonal_up": 135.0}


def coverage_of(frames: np.ndarray, color: list[int], background: list[int]) -> np.ndarray:
    """Per-pixel share of the shape (T, H, W), recovered from the blended colours."""
    fg, bg = np.asarray(color, float), np.asarray(background, float)
    diff = fg - bg
    return ((frames.astype(float) - bg) @ diff) / (diff @ diff)


def centroid_track(frames: np.ndarray, color: list[int], background: list[int]) -> np.ndarray:
    """The shape's centre (T, 2) as (y, x), the coverage-weighted mean pixel position."""
    alpha = coverage_of(frames, color, background).clip(0.0, 1.0)
    ys, xs = np.indices(alpha.shape[1:])
    total = alpha.sum(axis=(1, 2))
    return np.stack([(alpha * ys).sum((1, 2)) / total, (alpha * xs).sum((1, 2)) / total], axis=1)


def classify_motion(track: np.ndarray) -> str:
    """The motion category of a centroid track, from its geometry alone.

    Turning: the mean normalised cross product of successive steps, in (x right, y down)
    coordinates, so positive = clockwise on screen and ~0 on a straight line (a bounce
    reverses a step, which stays on the line). A straight track's direction is its principal
    axis (angle in [0, 180), y down).
    """
    step = np.diff(track, axis=0)  # (T-1, 2) as (dy, dx)
    dy, dx = step[:, 0], step[:, 1]
    norm = np.hypot(dy, dx)
    moved = (norm[:-1] > 0.5) & (norm[1:] > 0.5)  # a bounce mid-step can leave a frame still
    cross = (dx[:-1] * dy[1:] - dy[:-1] * dx[1:])[moved] / (norm[:-1] * norm[1:])[moved]
    turning = float(np.mean(cross))
    if abs(turning) > 0.05:
        return "clockwise" if turning > 0 else "counterclockwise"
    centred = track - track.mean(axis=0)
    values, vectors = np.linalg.eigh(centred.T @ centred)
    assert values[0] < 1e-3 * values[1], "a straight motion strays off its line"
    vy, vx = vectors[:, 1]
    angle = np.degrees(np.arctan2(vy, vx)) % 180.0
    distance = {m: min(abs(angle - a), 180 - abs(angle - a)) for m, a in LINEAR_ANGLE.items()}
    best = min(distance, key=distance.get)
    assert distance[best] < 3.0, f"track direction {angle:.1f} deg fits no linear motion"
    return best


# ---------------------------------------------------------------- labels match motions


def test_generated_labels_match_the_motion_in_the_frames():
    seen = set()
    for _, frames, attrs in generate(60, 20, seed=1):
        track = centroid_track(frames, attrs["color"], attrs["background"])
        assert classify_motion(track) == attrs["motion"], attrs
        assert attrs["label"] == MOTIONS.index(attrs["motion"])
        seen.add(attrs["motion"])
    assert seen == set(MOTIONS)  # every category was exercised


@pytest.mark.parametrize("motion", MOTIONS)
@pytest.mark.parametrize("shape", SHAPES)
def test_each_motion_and_shape_renders_its_motion(motion, shape):
    for k in range(3):
        rng = np.random.default_rng([7, k])
        frames, info = shapes_video(rng, 16, motion=motion, shape=shape)
        assert info["motion"] == motion and info["shape"] == shape
        track = centroid_track(frames, info["color"], info["background"])
        assert classify_motion(track) == motion
        # The rendered centroid is the drawn trajectory, up to the 1/4-pixel sub-sampling grid.
        np.testing.assert_allclose(track, info["trajectory"], atol=0.15)


def test_trajectories_stay_inside_the_frame_and_move():
    rng = np.random.default_rng(0)
    for motion in MOTIONS:
        for _ in range(20):
            radius = float(rng.uniform(0.08, 0.16)) * 64
            centres = trajectory(rng, motion, 50, radius, 64)
            assert centres.min() >= radius + 1.0 - 1e-9
            assert centres.max() <= 63 - radius - 1.0 + 1e-9
            speed = np.linalg.norm(np.diff(centres, axis=0), axis=1)
            assert speed.max() <= 0.07 * 64 + 1e-9
            assert np.median(speed) > 0.03 * 64  # moving, not standing still


# ---------------------------------------------------------------- determinism


def test_generate_is_deterministic_by_seed_split_and_index():
    a = list(generate(5, 8, seed=3))
    b = list(generate(5, 8, seed=3))
    for (ia, fa, aa), (ib, fb, ab) in zip(a, b):
        assert ia == ib and aa == ab and np.array_equal(fa, fb)
    # video i does not depend on where generation starts
    tail = list(generate(5, 8, seed=3, start=2))
    assert [v[0] for v in tail] == [v[0] for v in a[2:]]
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(tail, a[2:]))
    # another seed or split gives other videos
    other = next(iter(generate(1, 8, seed=4)))
    test = next(iter(generate(1, 8, seed=3, split="test")))
    assert not np.array_equal(other[1], a[0][1]) and not np.array_equal(test[1], a[0][1])
    assert test[0] == "shapes-test-000000" and a[0][0] == "shapes-train-000000"


def test_attrs_are_json_and_complete():
    video_id, frames, attrs = next(iter(generate(1, 6, seed=2, size=32)))
    assert frames.shape == (6, 32, 32, 3) and frames.dtype == np.uint8
    assert json.loads(json.dumps(attrs)) == attrs
    expected = {"source", "split", "num_frames", "fps", "label", "motion", "shape", "color"}
    assert expected | {"seed", "index"} <= set(attrs)
    assert attrs["source"] == "shapes" and attrs["fps"] == 10 and attrs["num_frames"] == 6
    assert isinstance(attrs["label"], int) and attrs["shape"] in SHAPES
    assert (attrs["seed"], attrs["index"], attrs["split"]) == (2, 0, "train")


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        generate(1, 4, split="val")
    with pytest.raises(ValueError, match="length"):
        generate(1, 0)
    with pytest.raises(ValueError, match="motion"):
        shapes_video(np.random.default_rng(0), 4, motion="zigzag")


# ---------------------------------------------------------------- shape, colour, anti-aliasing


def test_shape_colour_and_background_attrs_match_the_pixels():
    for _, frames, attrs in generate(24, 3, seed=5):
        color, background = attrs["color"], attrs["background"]
        assert np.linalg.norm(np.subtract(color, background)) >= 120  # always visible
        corners = frames[:, [0, 0, -1, -1], [0, -1, 0, -1]]  # the shape never reaches them
        assert (corners == background).all()
        # the shape's colour, exactly, inside it
        assert (frames[0] == color).all(axis=-1).sum() > 0.5 * np.pi * attrs["radius"] ** 2
        # the covered area tells a circle (pi r^2) from a square (4 r^2)
        area = coverage_of(frames[0], color, background).sum()
        r = attrs["radius"]
        expected = np.pi * r * r if attrs["shape"] == "circle" else 4 * r * r
        assert area == pytest.approx(expected, rel=0.03)


@pytest.mark.parametrize("shape", SHAPES)
def test_edges_are_anti_aliased(shape):
    rng = np.random.default_rng(11)
    frames, info = shapes_video(rng, 4, shape=shape)
    alpha = coverage_of(frames, info["color"], info["background"])
    partial = (alpha > 0.05) & (alpha < 0.95)  # edge pixels between the two colours
    assert partial.sum(axis=(1, 2)).min() >= 8
    assert len(np.unique(np.round(alpha[partial], 2))) >= 4  # graded, not one blend level
    # a pixel's coverage is the share of its 4x4 sub-pixels inside: multiples of 1/16
    exact = coverage(shape, np.asarray(info["trajectory"]), info["radius"], 64)
    if shape == "circle":
        np.testing.assert_allclose(exact * 16, np.round(exact * 16), atol=1e-4)
    assert np.abs(alpha - exact).max() < 0.02  # uint8 rounding only


# ---------------------------------------------------------------- framecast synth data=shapes


def test_synth_writes_a_labelled_shapes_store(tmp_path: Path):
    from pipeline.cli import main
    from pipeline.io.store import FrameStore

    store = tmp_path / "shapes.zarr"
    args = [
        "synth",
        "data=shapes",
        f"store={store}",
        "synth.num_videos=6",
        "synth.length=5",
        "data.size=32",
        "data.test_fraction=0.5",
    ]
    assert main(args) == 0
    s = FrameStore.open(str(store))
    assert len(s) == 6
    splits = sorted(s.attrs(v)["split"] for v in s.video_ids())
    assert splits == ["test"] * 3 + ["train"] * 3
    video_id = "shapes-train-000001"
    _, frames, attrs = list(generate(2, 5, seed=0, size=32))[1]
    assert np.array_equal(s.frames(video_id), frames)
    assert s.attrs(video_id)["label"] == attrs["label"]
    assert s.attrs(video_id)["motion"] == attrs["motion"]
    assert main([*args[:-1], "data.test_fraction=1.5"]) == 2  # a usage error, one line


# ---------------------------------------------------------------- radius range (data.radius)


def test_radius_range_sets_the_shape_size_and_keeps_the_default_draws():
    from pipeline.datasets.shapes import RADIUS

    default = list(generate(6, 4, seed=9, size=32))
    same = list(generate(6, 4, seed=9, size=32, radius=RADIUS))
    assert all(np.array_equal(a[1], b[1]) and a[2] == b[2] for a, b in zip(default, same))
    assert all(0.08 * 32 <= a["radius"] <= 0.16 * 32 for _, _, a in default)
    big = list(generate(6, 4, seed=9, size=32, radius=(0.2, 0.3)))
    for (_, _, small_attrs), (_, frames, attrs) in zip(default, big):
        assert 0.2 * 32 - 1e-3 <= attrs["radius"] <= 0.3 * 32 + 1e-3
        # the other draws (motion, shape, colours) do not change with the range
        for key in ("motion", "shape", "color", "background"):
            assert attrs[key] == small_attrs[key]
        area = coverage_of(frames[0], attrs["color"], attrs["background"]).sum()
        r = attrs["radius"]
        expected = np.pi * r * r if attrs["shape"] == "circle" else 4 * r * r
        assert area == pytest.approx(expected, rel=0.03)
    fixed = list(generate(3, 4, seed=9, size=32, radius=(0.25, 0.25)))
    assert all(a["radius"] == 8.0 for _, _, a in fixed)


@pytest.mark.parametrize(
    ("radius", "message"),
    [
        ((0.0, 0.1), "0 < min <= max"),
        ((-0.1, 0.1), "0 < min <= max"),
        ((0.3, 0.2), "0 < min <= max"),
        ((0.2, 0.46), "does not fit"),
        ((0.1,), r"\[min, max\]"),
    ],
)
def test_bad_radius_ranges_are_rejected(radius, message):
    with pytest.raises(ValueError, match=message):
        generate(1, 4, size=32, radius=radius)
    with pytest.raises(ValueError, match=message):
        shapes_video(np.random.default_rng(0), 4, 32, radius=radius)


def test_synth_radius_option(tmp_path: Path, capsys):
    from pipeline.cli import main
    from pipeline.io.store import FrameStore

    store = tmp_path / "big.zarr"
    args = ["synth", "data=shapes", f"store={store}", "synth.num_videos=4", "synth.length=3"]
    args += ["data.size=32", "data.test_fraction=0"]
    assert main([*args, "data.radius=[0.2,0.3]"]) == 0
    s = FrameStore.open(str(store))
    _, frames, attrs = next(iter(generate(1, 3, seed=0, size=32, radius=(0.2, 0.3))))
    assert np.array_equal(s.frames("shapes-train-000000"), frames)
    assert all(6.4 - 1e-3 <= s.attrs(v)["radius"] <= 9.6 + 1e-3 for v in s.video_ids())
    capsys.readouterr()
    for bad in ("[0.3,0.2]", "[0,0.2]", "[0.2,0.5]"):
        assert main([*args, f"store={tmp_path / 'bad.zarr'}", f"data.radius={bad}"]) == 2
        assert "data.radius" in capsys.readouterr().err
    assert main([*args, f"store={tmp_path / 'bad.zarr'}", "data.radius=[0.2,big]"]) == 2
    assert "data.radius" in capsys.readouterr().err


def test_fixed_background_option(tmp_path: Path, capsys):
    from pipeline.cli import main
    from pipeline.io.store import FrameStore

    for _, frames, attrs in generate(6, 4, seed=3, size=32, background=(0, 0, 0)):
        assert attrs["background"] == [0, 0, 0]
        assert (frames[:, 0, 0] == 0).all() and (frames[:, -1, -1] == 0).all()  # the corners
        assert np.linalg.norm(np.array(attrs["color"])) >= 120  # still far from it
    with pytest.raises(ValueError, match="0..255"):
        generate(1, 4, size=32, background=(0, 0, 256))
    store = tmp_path / "black.zarr"
    args = ["synth", "data=shapes", f"store={store}", "synth.num_videos=3", "synth.length=3"]
    assert main([*args, "data.size=32", "data.background=[0,0,0]"]) == 0
    s = FrameStore.open(str(store))
    assert all(s.attrs(v)["background"] == [0, 0, 0] for v in s.video_ids())
    capsys.readouterr()
    assert main([*args, f"store={tmp_path / 'bad.zarr'}", "data.background=[0,0]"]) == 2
    assert "data.background" in capsys.readouterr().err


def test_shape_motion_labels():
    plain = list(generate(12, 3, seed=5, size=32))
    both = list(generate(12, 3, seed=5, size=32, label="shape_motion"))
    for (_, f0, a0), (_, f1, a1) in zip(plain, both):
        assert np.array_equal(f0, f1)  # the same videos, only the label differs
        assert a1["label"] == SHAPES.index(a1["shape"]) * len(MOTIONS) + a0["label"]
    assert {a["label"] >= len(MOTIONS) for _, _, a in both} == {True, False}
    with pytest.raises(ValueError, match="unknown label"):
        generate(1, 3, size=32, label="colour")


def test_synth_label_option(tmp_path: Path, capsys):
    from pipeline.cli import main
    from pipeline.io.store import FrameStore

    args = ["synth", "data=shapes", "synth.num_videos=6", "synth.length=3", "data.size=32"]
    assert main([*args, f"store={tmp_path / 'l.zarr'}", "data.label=shape_motion"]) == 0
    s = FrameStore.open(str(tmp_path / "l.zarr"))
    for v in s.video_ids():
        a = s.attrs(v)
        assert a["label"] == SHAPES.index(a["shape"]) * len(MOTIONS) + MOTIONS.index(a["motion"])
    capsys.readouterr()
    assert main([*args, f"store={tmp_path / 'bad.zarr'}", "data.label=colour"]) == 2
    assert "data.label=colour" in capsys.readouterr().err
