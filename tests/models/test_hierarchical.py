"""The hierarchical predictor: heatmaps and soft-argmax invert each other, the pose LSTM learns,
the analogy identity, learned keypoints follow a moving blob, the keypointrcnn path's error,
streaming, PCK and sharpness on known inputs, and train -> evaluate through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models import build_task
from models.hierarchical import (
    PENN_LIMBS,
    HierarchicalTask,
    MissingWeights,
    PoseLSTM,
    gaussian_maps,
    heatmap_keypoints,
    masked_l2,
    soft_argmax,
    to_unit,
)
from models.metrics import PCKAccumulator, body_size, pck, sharpness
from pipeline.runtime import checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def trainer_update(optimizers: dict[str, torch.optim.Optimizer]):
    """What the generic trainer does in update(loss, name): zero, backward, clip, step."""
    from pipeline.stages.train import make_update

    return make_update(optimizers, 1.0)


TINY = dict(pose_embed=8, pose_hidden=16, gen_channels=8, detector_channels=4, disc_channels=4)


# ---------------------------------------------------------------------------------------------
# Heatmaps


def test_heatmaps_and_soft_argmax_invert_each_other() -> None:
    gen = torch.Generator().manual_seed(0)
    kp = 6 + torch.rand(4, 13, 2, generator=gen) * 20  # away from the border of a 32x32 frame
    maps = gaussian_maps(kp, 32, sigma=1.5)
    assert maps.shape == (4, 13, 32, 32)
    assert torch.allclose(heatmap_keypoints(maps), kp, atol=1e-3)
    # soft-argmax of the log-heatmap: the softmax of a log-Gaussian is that Gaussian, normalised
    back = soft_argmax(torch.log(maps.clamp_min(1e-30)))
    assert (back - kp).norm(dim=-1).max() < 1.0
    # at stride 4 (the detector's 8x8 grid of a 32x32 frame) the cell centres map back to pixels
    logits = torch.full((1, 1, 8, 8), -1e4)
    logits[0, 0, 2, 5] = 0.0  # row 2, column 5: pixel centre (5*4 + 1.5, 2*4 + 1.5)
    assert soft_argmax(logits, stride=4).squeeze().tolist() == [21.5, 9.5]


def test_missing_joints_draw_nothing_and_cost_nothing() -> None:
    kp = torch.full((1, 13, 2), 16.0) + torch.arange(13.0)[None, :, None]
    kp[0, 5] = float("nan")  # left wrist missing
    maps = gaussian_maps(kp, 32, 1.5, PENN_LIMBS)
    assert maps.shape == (1, 13 + len(PENN_LIMBS), 32, 32) and torch.isfinite(maps).all()
    assert maps[0, 5].sum() == 0
    limb = PENN_LIMBS.index((3, 5))  # left forearm
    assert maps[0, 13 + limb].sum() == 0 and maps[0, 13 + PENN_LIMBS.index((1, 3))].sum() > 0
    # a limb's map peaks along the segment between its joints
    a, b = kp[0, 1], kp[0, 3]
    mid = ((a + b) / 2).round().long()
    assert maps[0, 13 + PENN_LIMBS.index((1, 3)), mid[1], mid[0]] > 0.5
    pred = torch.zeros(1, 13, 2, requires_grad=True)
    target = torch.ones(1, 13, 2)
    target[0, 5] = float("nan")
    loss = masked_l2(pred, target)
    loss.backward()
    assert loss.item() == pytest.approx(2.0) and torch.isfinite(pred.grad).all()
    assert pred.grad[0, 5].abs().sum() == 0


# ---------------------------------------------------------------------------------------------
# Pose LSTM


def circling_poses(batch: int, steps: int, seed: int = 0) -> torch.Tensor:
    """(batch, steps, 4, 2) unit coordinates: 4 joints circling at random speeds and phases."""
    gen = torch.Generator().manual_seed(seed)
    speed = 0.2 + 0.3 * torch.rand(batch, 4, 1, generator=gen)
    phase = 6.28 * torch.rand(batch, 4, 1, generator=gen)
    t = torch.arange(steps).float()[None, None, :]
    angle = phase + speed * t  # (B, 4, T)
    return 0.5 * torch.stack([angle.cos(), angle.sin()], dim=-1).transpose(1, 2)


def test_pose_lstm_starts_as_copy_last_and_lowers_its_loss() -> None:
    torch.manual_seed(0)
    lstm = PoseLSTM(4, embed=16, hidden=32, layers=1)
    poses = circling_poses(16, 14)
    observed, future = poses[:, :6], poses[:, 6:]
    observed_missing = observed.clone()
    observed_missing[:, -1, 2] = float("nan")  # the last sight of joint 2 is missing
    with torch.no_grad():
        pred = lstm(observed_missing, 20)  # any horizon, beyond the trained 8
    assert pred.shape == (16, 20, 4, 2) and torch.isfinite(pred).all()
    # untrained (zero readout): every step repeats each joint's last seen position
    assert torch.allclose(pred[:, 5, 2], observed[:, -2, 2]) and torch.allclose(
        pred[:, 0, 0], observed[:, -1, 0]
    )
    opt = torch.optim.Adam(lstm.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = masked_l2(lstm(observed, 8), future)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


# ---------------------------------------------------------------------------------------------
# Analogy generator and learned keypoints (toy sets, trained for a few seconds)


def squares(batch: int, steps: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, 3, 16, 16): a 4x4 square of a random colour on a random background moving up to
    a pixel per frame, and its centre as one keypoint (B, T, 1, 2) (x, y)."""
    bg = torch.rand(batch, 1, 3, 1, 1, generator=gen)
    fg = torch.rand(batch, 1, 3, 1, 1, generator=gen)
    start = torch.randint(0, 12, (batch, 1, 2), generator=gen)
    vel = torch.randint(-1, 2, (batch, 1, 2), generator=gen)
    pos = (start + vel * torch.arange(steps)[None, :, None]).clamp(0, 12)  # (B, T, 2) top-left
    grid = torch.arange(16)
    inside_x = (grid >= pos[..., 0:1]) & (grid < pos[..., 0:1] + 4)  # (B, T, 16)
    inside_y = (grid >= pos[..., 1:2]) & (grid < pos[..., 1:2] + 4)
    mask = (inside_y[..., :, None] & inside_x[..., None, :]).unsqueeze(2).float()
    frames = bg + mask * (fg - bg)
    return frames, (pos.float() + 1.5).unsqueeze(2)


def test_analogy_identity_after_training_on_a_toy_set() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    options = {**TINY, "gen_channels": 16}
    task = HierarchicalTask(
        frame_size=16,
        context=2,
        horizon=4,
        num_keypoints=1,
        stage="analogy",
        max_offset=5,
        adversarial_weight=0.0,
        lr=2e-3,
        heatmap_sigma=0.08,
        **options,
    )
    assert task.needs_keypoints and "discriminator" not in task.networks
    update = trainer_update(task.make_optimizers())
    frames, kp = squares(16, 6, gen)
    model = task.inference_model().eval()

    def identity_error() -> float:
        with torch.no_grad():
            maps = model.pose_maps(kp[:, 0])
            out = model.generator(frames[:, 0], maps, maps)
        return (out - frames[:, 0]).square().mean().item()

    before = identity_error()
    for step in range(150):
        f, k = squares(16, 6, gen)
        logs = task.training_step({"frames": f, "keypoints": k}, step, update)
        assert {"loss", "l2", "detector"} <= set(logs) and "pose" not in logs
    after = identity_error()
    spread = (frames[:, 0] - frames[:, 0].mean(dim=(0, 2, 3), keepdim=True)).square().mean()
    assert after < 0.2 * spread.item() and after < 0.2 * before


def blobs(batch: int, steps: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, 1, 16, 16): a Gaussian blob bouncing on grey, and its centre (B, T, 2) (x, y)."""
    pos = torch.rand(batch, 2, generator=gen) * 10 + 3
    vel = (torch.rand(batch, 2, generator=gen) - 0.5) * 2
    grid = torch.arange(16).float()
    frames, centres = [], []
    for _ in range(steps):
        centres.append(pos.clone())
        gx = torch.exp(-((grid - pos[:, 0:1]) ** 2) / 2)
        gy = torch.exp(-((grid - pos[:, 1:2]) ** 2) / 2)
        frames.append(0.2 + 0.7 * (gy[:, :, None] * gx[:, None, :])[:, None])
        pos = pos + vel
        vel = torch.where((pos < 3) | (pos > 12), -vel, vel)
        pos = pos.clamp(3, 12)
    return torch.stack(frames, 1), torch.stack(centres, 1)


def test_learned_keypoints_follow_a_moving_blob() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    task = HierarchicalTask(
        frame_size=16,
        channels=1,
        context=2,
        horizon=6,
        structure="learned",
        num_keypoints=1,
        stage="analogy",
        max_offset=7,
        adversarial_weight=0.0,
        lr=2e-3,
        heatmap_sigma=0.08,
        **{**TINY, "detector_channels": 8},
    )
    assert not task.needs_keypoints  # no labels: frames only
    update = trainer_update(task.make_optimizers())
    for step in range(200):
        frames, _ = blobs(16, 8, gen)
        task.training_step(frames, step, update)
    frames, centres = blobs(16, 8, gen)
    found = task.inference_model().eval().detect(frames)[:, :, 0].reshape(-1, 2)  # (N, 2)
    truth = centres.reshape(-1, 2)
    # the keypoint need not sit on the blob's centre, but it must move with it: a linear map
    # from keypoint to centre fits within a pixel
    design = torch.cat([found, torch.ones(len(found), 1)], dim=1)
    fit = design @ torch.linalg.lstsq(design, truth).solution
    assert (fit - truth).norm(dim=1).mean() < 1.0
    for d in range(2):
        assert abs(np.corrcoef(found[:, d].numpy(), truth[:, d].numpy())[0, 1]) > 0.95


# ---------------------------------------------------------------------------------------------
# Predictor interface, options, errors


def test_predict_stream_and_every_stage_step() -> None:
    torch.manual_seed(0)
    frames = torch.rand(2, 10, 3, 16, 16)
    kp = torch.rand(2, 10, 13, 2) * 15
    kp[0, :, 4] = float("nan")  # a joint never seen in one clip
    for stage in ("pose", "analogy", "both"):
        task = build_task("hierarchical", frame_size=16, context=4, horizon=6, stage=stage, **TINY)
        logs = task.training_step(
            {"frames": frames, "keypoints": kp}, 0, trainer_update(task.make_optimizers())
        )
        assert np.isfinite(logs["loss"]) and ("pose" in logs) == (stage != "analogy")
        assert ("l2" in logs) == (stage != "pose") and ("discriminator" in logs) == (
            stage != "pose"
        )
    model = task.inference_model().eval()
    out = model.forecast(frames[:, :4], 12)
    assert out["frames"].shape == (2, 12, 3, 16, 16) and out["keypoints"].shape == (2, 12, 13, 2)
    assert 0 <= out["frames"].min() and out["frames"].max() <= 1
    given = model.forecast(frames[:, :4], 3, observed_keypoints=kp[:, :4])
    assert torch.isfinite(given["keypoints"]).all()  # missing joints are carried, not NaN
    stream = model.stream(2)
    with pytest.raises(RuntimeError):
        stream.predict(1)
    for t in range(4):
        stream.step(frames[:, t])
    assert torch.allclose(stream.predict(12), out["frames"], atol=1e-5)
    with pytest.raises(ValueError, match="clip of"):
        task.training_step(frames[:, :5], 0, trainer_update(task.make_optimizers()))


def test_merged_streams_step_as_each_alone() -> None:
    """Cross-session batching: merge -> step -> split equals stepping each stream alone."""
    torch.manual_seed(0)
    model = build_task("hierarchical", frame_size=16, context=4, horizon=6, **TINY)
    model = model.inference_model().eval()
    frames = torch.rand(3, 6, 3, 16, 16)
    alone = [model.stream() for _ in range(3)]
    for t in range(6):
        for i, s in enumerate(alone):
            s.step(frames[i : i + 1, t])
    batched = [model.stream() for _ in range(3)]
    for t in range(6):
        merged = type(batched[0]).merge(batched)
        merged.step(frames[:, t])
        batched = merged.split()
    assert [s.frames_seen for s in batched] == [6, 6, 6]
    for i in range(3):
        assert torch.allclose(batched[i].predict(5), alone[i].predict(5), atol=1e-5)


def test_options_are_checked() -> None:
    with pytest.raises(TypeError, match="unknown hierarchical option"):
        build_task("hierarchical", hidden=3)
    with pytest.raises(ValueError, match="model.structure"):
        build_task("hierarchical", structure="magic")
    with pytest.raises(ValueError, match="model.stage"):
        build_task("hierarchical", stage="all")
    with pytest.raises(ValueError, match="multiple of 8"):
        build_task("hierarchical", frame_size=20)
    with pytest.raises(MissingWeights, match="model.feature_weights=/no/vgg.pth"):
        checkpoint.build({"name": "hierarchical", "feature_weights": "/no/vgg.pth", **TINY})
    with pytest.raises(MissingWeights, match="model.feature_weights=vgg.pth"):
        build_task("hierarchical", feature_weights="vgg.pth", **TINY)  # no `pretrained` given
    assert "pretrained" not in build_task("hierarchical", **TINY).config()


def test_keypointrcnn_without_weights_says_where_to_put_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(MissingWeights) as err:
        checkpoint.build({"name": "hierarchical", "structure": "keypointrcnn", **TINY})
    message = str(err.value)
    assert "keypointrcnn_resnet50_fpn_coco-fc266e95.pth" in message
    assert "https://download.pytorch.org/models/" in message
    assert "model.keypointrcnn_weights=" in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in message
    with pytest.raises(MissingWeights, match="/no/rcnn.pth does not exist"):
        checkpoint.build(
            {
                "name": "hierarchical",
                "structure": "keypointrcnn",
                "keypointrcnn_weights": "/no/rcnn.pth",
            }
        )
    # through the CLI it is a usage error (one clear line, no traceback)
    from pipeline.cli import main

    code = main(
        [
            "train",
            "store=/nonexistent",
            f"run_dir={tmp_path / 'r'}",
            "model=hierarchical",
            "model.structure=keypointrcnn",
        ]
    )
    assert code != 0


def test_build_loads_pretrained_files_and_passes_them_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pipeline.runtime.checkpoint.build reads the weights files (the option's path, else torch
    hub's cache) and hands the state dicts to the frozen networks; models read no files."""
    import models.hierarchical as hierarchical

    seen: dict[str, dict[str, torch.Tensor]] = {}

    class Fake(torch.nn.Module):
        def __init__(self, key: str, state: dict[str, torch.Tensor], *args: object) -> None:
            super().__init__()
            seen[key] = state

    monkeypatch.setattr(hierarchical, "VGGFeatures", lambda s: Fake("features", s))
    monkeypatch.setattr(hierarchical, "KeypointRCNNDetector", lambda s, m: Fake("rcnn", s))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save({"w": torch.arange(3.0)}, hub / hierarchical.KEYPOINTRCNN_FILE)
    torch.save({"v": torch.ones(2)}, tmp_path / "vgg.pth")
    options = {"name": "hierarchical", "structure": "keypointrcnn", **TINY}
    task = checkpoint.build({**options, "feature_weights": str(tmp_path / "vgg.pth")})
    assert seen["rcnn"]["w"].tolist() == [0.0, 1.0, 2.0]
    assert seen["features"]["v"].tolist() == [1.0, 1.0]
    assert "pretrained" not in task.config() and task.config()["structure"] == "keypointrcnn"


def test_pck_and_body_size_on_known_poses() -> None:
    true = torch.zeros(1, 2, 3, 2)
    true[..., 0] = torch.tensor([0.0, 10.0, 0.0])  # bounding box 10 wide, 20 high: size 20
    true[..., 1] = torch.tensor([0.0, 0.0, 20.0])
    assert body_size(true).tolist() == [[20.0, 20.0]]
    pred = true.clone()
    pred[0, 0, 0, 0] += 1.9  # within 0.1 * 20 = 2 pixels: correct
    pred[0, 0, 1, 1] += 2.5  # beyond: wrong
    pred[0, 1, 2] = float("nan")  # a missing prediction of a visible joint: wrong
    assert pck(pred, true)[0].tolist() == pytest.approx([2 / 3, 2 / 3])
    true_missing = true.clone()
    true_missing[0, 1, 2] = float("nan")  # not visible: not counted
    assert pck(pred, true_missing)[0, 1].item() == pytest.approx(1.0)
    acc = PCKAccumulator()
    acc.update(pred, true)
    acc.update(true, true)
    result = acc.result()
    assert result["per_step"] == pytest.approx([5 / 6, 5 / 6])
    assert result["mean"] == pytest.approx(5 / 6)


def test_sharpness_on_known_frames() -> None:
    true = torch.zeros(1, 3, 1, 16, 16)
    true[..., 4:12, 4:12] = 1.0
    blurred = torch.nn.functional.avg_pool2d(true.flatten(0, 1), 3, 1, 1).unflatten(0, (1, 3))
    assert sharpness(true, true).tolist() == pytest.approx([1.0] * 3)
    assert (sharpness(blurred, true) < 0.6).all()
    assert sharpness(torch.full_like(true, 0.5), true).tolist() == [0.0] * 3


# ---------------------------------------------------------------------------------------------
# CLI: synth -> train (stages in sequence) -> evaluate with PCK, oracle poses and a baseline


def test_train_stages_and_evaluate_long_horizon_with_baseline(tmp_path: Path) -> None:
    from pipeline.cli import main

    store = tmp_path / "figs.zarr"
    assert (
        main(
            [
                "synth",
                "data=stick_figures",
                f"store={store}",
                "synth.num_videos=6",
                "synth.length=16",
                "data.size=32",
                "data.test_fraction=0.34",
            ]
        )
        == 0
    )
    run = tmp_path / "run"
    common = [
        f"store={store}",
        f"run_dir={run}",
        "model=hierarchical",
        "model.frame_size=32",
        "model.context=4",
        "model.horizon=4",
        "model.pose_hidden=16",
        "model.pose_embed=8",
        "model.gen_channels=4",
        "model.detector_channels=4",
        "model.disc_channels=4",
        "trainer.batch_size=4",
        "trainer.device=cpu",
    ]
    assert main(["train", *common, "model.stage=analogy", "trainer.max_steps=2"]) == 0
    assert (
        main(["train", *common, "model.stage=pose", "trainer.resume=true", "trainer.max_steps=3"])
        == 0
    )
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert "l2" in lines[0] and "pose" in lines[-1] and lines[-1]["step"] == 3
    base = tmp_path / "base"
    assert (
        main(
            [
                "train",
                f"store={store}",
                f"run_dir={base}",
                "model.frame_size=32",
                "model.channels=3",
                "model.hidden=8",
                "model.context=4",
                "model.horizon=4",
                "model.loss=mse",
                "trainer.max_steps=1",
                "trainer.batch_size=4",
            ]
        )
        == 0
    )
    report = tmp_path / "eval.json"
    assert (
        main(
            [
                "evaluate",
                f"checkpoint={run / 'checkpoints' / 'last.pt'}",
                f"store={store}",
                "evaluate.context=4",
                "evaluate.horizon=12",
                f"report={report}",
                f"evaluate.baseline={base / 'checkpoints' / 'last.pt'}",
                "evaluate.device=cpu",
                f"evaluate.out={tmp_path / 'ev'}",
            ]
        )
        == 0
    )
    r = json.loads(report.read_text())
    assert r["sequences"] == 2 and r["horizon"] == 12
    for name in ("ssim", "psnr", "sharpness", "pck"):
        assert len(r["per_step"][name]) == 12
    assert 0.0 <= r["pck"] <= 1.0
    for key in ("oracle_poses", "baseline", "copy_last"):
        assert len(r[key]["per_step"]["ssim"]) == 12 and "sharpness" in r[key]
    assert r["baseline"]["model"] == "lstm_autoencoder"
    assert r["copy_last"]["sharpness"] == pytest.approx(
        np.mean(r["copy_last"]["per_step"]["sharpness"]), rel=0.5
    )


def test_training_through_the_generic_trainer_loop_gives_keypoints(tmp_path: Path) -> None:
    """The trainer hands landmark tasks {"frames", "keypoints"} on the task's device."""
    seen = {}

    class Spy(HierarchicalTask):
        def training_step(self, batch, step, update):  # noqa: ANN001, ANN201
            seen.update({k: (tuple(v.shape), v.dtype) for k, v in batch.items()})
            return super().training_step(batch, step, update)

    from pipeline.io.store import FrameStore
    from pipeline.stages.train import train_loop

    url = str(tmp_path / "s.zarr")
    store = FrameStore.create(url)
    for i in range(2):
        kp = np.random.default_rng(i).uniform(0, 15, (12, 13, 2)).astype(np.float32)
        frames = np.zeros((12, 16, 16, 3), np.uint8)
        store.write_video(f"v{i}", frames, {"split": "train"}, keypoints=kp)
    import models

    models.FAMILIES["hierarchical_spy"] = models.Family(f"{__name__}:_SpyHolder", "predictor")

    class SpyHolder(Spy):  # a registered task class (the registry names classes)
        def __init__(self, **o) -> None:  # noqa: ANN003
            super().__init__(**{**o, "name": "hierarchical"})

    globals()["_SpyHolder"] = SpyHolder
    try:
        job = {
            "store": url,
            "data": {"name": "store"},
            "run_dir": str(tmp_path / "run"),
            "trainer": {"max_steps": 1, "batch_size": 2, "device": "cpu", "test_fraction": 0.0},
            "model": {
                "name": "hierarchical_spy",
                "frame_size": 16,
                "context": 4,
                "horizon": 4,
                **TINY,
            },
            "config": {},
        }
        train_loop(job)
    finally:
        del models.FAMILIES["hierarchical_spy"]
    assert seen["frames"] == ((2, 8, 3, 16, 16), torch.float32)
    assert seen["keypoints"] == ((2, 8, 13, 2), torch.float32)
    assert to_unit(torch.tensor([0.0, 15.0]), 16).tolist() == [-1.0, 1.0]


# ---------------------------------------------------------------------------------------------
# The paper's settings as options (hierarchical_paper.yaml)


def test_pose_lstm_fed_zeros_rolls_on_its_state_alone() -> None:
    """pose_feedback="zeros" (the official code): after the observed poses the LSTM reads a
    zero input; each step adds its readout's change to the last prediction."""
    torch.manual_seed(0)
    lstm = PoseLSTM(4, embed=16, hidden=32, layers=2, feedback="zeros")
    torch.nn.init.normal_(lstm.readout.weight, std=0.1)  # not copy-last: a real rollout
    poses = circling_poses(3, 6)
    with torch.no_grad():
        pred = lstm(poses, 5)
        out, state = lstm.observe(poses)
        u = poses[:, -1] + lstm.delta(out[:, -1])
        want = [u]
        for _ in range(4):
            step, state = lstm.lstm(torch.zeros(3, 1, 16), state)
            u = u + lstm.delta(step[:, 0])
            want.append(u)
    assert torch.allclose(pred, torch.stack(want, 1), atol=1e-5)
    own = PoseLSTM(4, embed=16, hidden=32, layers=2)
    own.load_state_dict(lstm.state_dict())
    with torch.no_grad():
        assert not torch.allclose(own(poses, 5), pred, atol=1e-4)  # the feedback differs
        assert torch.allclose(own(poses, 1), lstm(poses, 1))  # the first step does not


def test_zero_feedback_trains_and_streams_like_predict() -> None:
    torch.manual_seed(0)
    lstm = PoseLSTM(4, embed=16, hidden=32, layers=1, feedback="zeros")
    poses = circling_poses(16, 14)
    opt = torch.optim.Adam(lstm.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = masked_l2(lstm(poses[:, :6], 8), poses[:, 6:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    task = build_task("hierarchical", frame_size=16, context=4, horizon=6, pose_feedback="zeros",
                      **TINY)  # fmt: skip
    model = task.inference_model().eval()
    frames = torch.rand(2, 4, 3, 16, 16)
    stream = model.stream(2)
    for t in range(4):
        stream.step(frames[:, t])
    assert torch.allclose(stream.predict(7), model.predict(frames, 7), atol=1e-5)


def test_bottleneck_analogy_is_an_encoder_decoder_without_skips() -> None:
    """analogy_scales="bottleneck" (the official code): the pose difference at the 1/8 scale
    only, decoded without skip connections; equal poses still cancel exactly."""
    torch.manual_seed(0)
    task = build_task("hierarchical", frame_size=16, analogy_scales="bottleneck", **TINY)
    gen = task.networks["generator"]
    widths = gen.f_img.widths
    for i, up in enumerate(gen.dec.ups):  # no skip channels at any scale
        assert up[0][0].in_channels == widths[i + 1]
    frame = torch.rand(2, 3, 16, 16)
    a, b = (gaussian_maps(torch.rand(2, 13, 2) * 15, 16, 1.5, PENN_LIMBS) for _ in range(2))
    with torch.no_grad():
        assert torch.allclose(gen(frame, a, a), gen(frame, b, b), atol=1e-6)
        img, from_, to = gen.f_img(frame), gen.f_pose(a), gen.f_pose(b)
        want = gen.dec([None, None, None, img[3] + to[3] - from_[3]])  # h^3 alone
        assert torch.allclose(gen(frame, a, b), want, atol=1e-6)
        assert torch.allclose(
            gen.dec([torch.rand_like(f) for f in img[:3]] + [img[3]]),
            gen.dec([None, None, None, img[3]]),
        )  # finer scales unread
    skips = build_task("hierarchical", frame_size=16, **TINY).networks["generator"]
    assert skips.dec.ups[0][0][0].in_channels == widths[1] + widths[0]  # the default: U-Net


@pytest.mark.parametrize("to_detector", [True, False])
def test_adversarial_gradient_reaches_learned_keypoints_only_when_asked(to_detector) -> None:
    torch.manual_seed(0)
    task = build_task("hierarchical", frame_size=16, channels=1, context=2, horizon=4,
                      structure="learned", num_keypoints=2, stage="analogy",
                      adversarial_to_detector=to_detector, **TINY)  # fmt: skip
    terms = task.analogy_losses(torch.rand(4, 6, 1, 16, 16), None)
    terms["adversarial"].backward()
    detector = [p.grad for p in task.networks["detector"].parameters()]
    generator = [p.grad for p in task.networks["generator"].parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in generator)  # G still learns from D
    reached = any(g is not None and g.abs().sum() > 0 for g in detector)
    assert reached is to_detector
    task.networks.zero_grad()
    task.analogy_losses(torch.rand(4, 6, 1, 16, 16), None)["l2"].backward()
    assert any(p.grad is not None for p in task.networks["detector"].parameters())  # L2 does


def test_paper_config_states_the_papers_values() -> None:
    from pipeline.core.config import compose, to_plain

    paper = to_plain(compose("train", ["model=hierarchical_paper"]).model)
    default = to_plain(compose("train", ["model=hierarchical"]).model)
    assert paper["adversarial_weight"] == 1.0 and default["adversarial_weight"] == 0.01
    assert paper["pose_feedback"] == default["pose_feedback"] == "zeros"  # measured: yaml
    old_checkpoint = {k: v for k, v in default.items() if k != "pose_feedback"}
    assert build_task(**old_checkpoint).cfg.pose_feedback == "own"  # as it was trained
    assert paper["heatmap_sigma"] == pytest.approx(2.5 * default["heatmap_sigma"])
    assert (paper["analogy_scales"], default["analogy_scales"]) == ("bottleneck", "all")
    assert paper["adversarial_to_detector"] is False and default["adversarial_to_detector"]
    task = build_task(**{**paper, "frame_size": 16, **TINY})
    frames, kp = torch.rand(2, 42, 3, 16, 16), torch.rand(2, 42, 13, 2) * 15
    logs = task.training_step({"frames": frames, "keypoints": kp}, 0,
                              trainer_update(task.make_optimizers()))  # fmt: skip
    assert np.isfinite(logs["loss"]) and {"pose", "l2", "adversarial"} <= set(logs)
    with pytest.raises(ValueError, match="model.pose_feedback"):
        build_task("hierarchical", pose_feedback="truth")
    with pytest.raises(ValueError, match="model.analogy_scales"):
        build_task("hierarchical", analogy_scales="middle")
