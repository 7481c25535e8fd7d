"""Stick figures: rendering matches the keypoints (joints lit, limbs connected), determinism,
every action moves, `framecast synth data=stick_figures` stores keypoints, and the loader's
`keypoints=True` gives each clip its own keypoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.datasets.stick_figures import (
    ACTIONS,
    JOINTS,
    LIMBS,
    generate,
    render,
    stick_figure_video,
)


def _video(action: str, size: int = 64, length: int = 24, seed: int = 3):
    return stick_figure_video(np.random.default_rng(seed), length, size, action=action)


def _coverage(keypoints: np.ndarray, info: dict, size: int) -> np.ndarray:
    colors = np.array(info["colors"])
    _, cover = render(
        keypoints, info["head_radius"], info["line_width"], colors, info["sky"], size=size
    )
    return cover


@pytest.mark.parametrize("size", [64, 128])
def test_joints_are_lit_and_limbs_connected(size: int) -> None:
    for i, action in enumerate(ACTIONS):
        frames, kp, info = _video(action, size, length=12, seed=i)
        assert frames.shape == (12, size, size, 3) and frames.dtype == np.uint8
        assert kp.shape == (12, len(JOINTS), 2) and kp.dtype == np.float32
        assert (kp >= 0).all() and (kp <= size - 1).all()  # (x, y) inside the frame
        cover = _coverage(kp, info, size)
        # coverage is what the frames show: background where 0, figure colours where 1
        sky = np.array(info["sky"])
        far = cover == 0
        ys = np.arange(size)[:, None].repeat(size, 1)
        above_floor = np.broadcast_to(ys <= info["floor_y"], cover.shape)
        assert (frames[far & above_floor] == sky).all()
        t, j = np.meshgrid(np.arange(12), np.arange(len(JOINTS)), indexing="ij")
        x, y = np.rint(kp[..., 0]).astype(int), np.rint(kp[..., 1]).astype(int)
        assert (cover[t, y, x] >= 0.5).all(), f"{action}: a joint pixel is not lit"
        # the pixel at a joint differs clearly from the background behind it
        bg = np.where((y > info["floor_y"])[..., None], info["floor"], sky)
        dist = np.linalg.norm(frames[t, y, x].astype(float) - bg, axis=-1)
        assert (dist >= 40).all()
        neck = (kp[:, 1] + kp[:, 2]) / 2  # the head is drawn joined to the shoulders' midpoint
        for a, b in LIMBS:  # every point along every limb is covered: limbs are connected
            end = neck if a == 0 else kp[:, b]
            for s in np.linspace(0, 1, 9):
                p = kp[:, a] + s * (end - kp[:, a])
                px, py = np.rint(p[:, 0]).astype(int), np.rint(p[:, 1]).astype(int)
                assert (cover[np.arange(12), py, px] >= 0.5).all(), f"{action}: limb {a}-{b}"
        # anti-aliased: edge pixels take intermediate coverage
        assert ((cover > 0.05) & (cover < 0.95)).any()


def test_every_action_moves_and_labels_match() -> None:
    for i, action in enumerate(ACTIONS):
        _, kp, info = _video(action, seed=10 + i)
        assert info["label"] == i and info["action"] == action
        # some joint travels more than a few pixels over the clip
        assert kp.std(axis=0).max() > 1.5, action
    with pytest.raises(ValueError, match="unknown action"):
        _video("dance")


def test_generate_is_deterministic_and_index_addressed() -> None:
    a = list(generate(3, 8, seed=5))
    b = list(generate(3, 8, seed=5, start=1))
    c = list(generate(3, 8, seed=6))
    assert [v[0] for v in a] == ["stick-train-000000", "stick-train-000001", "stick-train-000002"]
    for (ia, fa, aa, ka), (ib, fb, ab, kb) in zip(a[1:], b):
        assert ia == ib and aa == ab
        np.testing.assert_array_equal(fa, fb)
        np.testing.assert_array_equal(ka, kb)
    assert not np.array_equal(a[0][1], c[0][1])
    test = next(generate(1, 8, split="test", seed=5))
    assert test[2]["split"] == "test" and not np.array_equal(test[1], a[0][1])
    attrs = a[0][2]
    assert attrs["keypoint_format"] == "xy" and attrs["joints"] == list(JOINTS)
    assert attrs["action"] == ACTIONS[attrs["label"]]


def test_layout_matches_the_model() -> None:
    from models.hierarchical import PENN_JOINTS, PENN_LIMBS

    assert JOINTS == PENN_JOINTS and LIMBS == PENN_LIMBS


def test_synth_stores_keypoints_and_loader_cuts_them_with_clips(tmp_path: Path) -> None:
    from pipeline.cli import main
    from pipeline.io.loader import ClipDataset
    from pipeline.io.store import FrameStore

    url = str(tmp_path / "figs.zarr")
    args = ["synth", "data=stick_figures", f"store={url}", "synth.num_videos=3", "synth.length=10"]
    assert main([*args, "data.test_fraction=0.34", "synth.chunk_frames=4"]) == 0
    store = FrameStore.open(url)
    want = {v[0]: v for v in generate(2, 10)}
    for vid, (_, frames, attrs, kp) in want.items():
        np.testing.assert_array_equal(store.frames(vid), frames)
        np.testing.assert_array_equal(store.keypoints(vid), kp)
        assert store.attrs(vid)["action"] == attrs["action"]
    for cache in (True, False):
        ds = ClipDataset(
            url, 6, 4, split="train", cache=cache, keypoints=True, block_frames=4, seed=1
        )
        seen = 0
        for batch in ds:
            assert set(batch) == {"frames", "keypoints"}
            assert batch["keypoints"].shape == (len(batch["frames"]), 6, 13, 2)
            for clip, kp in zip(batch["frames"].numpy(), batch["keypoints"].numpy()):
                matches = [
                    (vid, s)
                    for vid, v in want.items()
                    for s in range(5)
                    if np.array_equal(v[1][s : s + 6], clip)
                ]
                assert matches, "clip not found in any video"
                vid, s = matches[0]
                np.testing.assert_array_equal(kp, want[vid][3][s : s + 6])
                seen += 1
        assert seen == 2 * 5
    with pytest.raises(ValueError, match="no keypoints"):
        other = FrameStore.create(str(tmp_path / "plain.zarr"))
        other.write_video("v", np.zeros((8, 32, 32, 3), np.uint8), {"split": "train"})
        ClipDataset(other, 4, 2, keypoints=True)
