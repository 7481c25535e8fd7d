"""Generator metrics: the Fréchet distance against closed-form Gaussians, feature statistics,
ACD on constructed videos, the video classifier (shapes, a few steps that learn tiny data), and
`framecast evaluate` of a generator: accuracy, Fréchet distance, ACD, FVD through an untrained
TorchScript network standing in for I3D. Tiny sizes, nothing trains for long."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from models import build_task
from models.metrics import (
    average_content_distance,
    described_videos,
    feature_statistics,
    figure_masks,
    frechet_distance,
    inception_score,
    interior,
    object_colours,
    object_masks,
)
from models.mocogan import MoCoGANTask
from models.video_classifier import VideoClassifier, VideoClassifierConfig, VideoClassifierTask
from pipeline.cli import main
from pipeline.datasets.shapes import generate as shapes
from pipeline.datasets.stick_figures import generate as stick_figures
from pipeline.io.store import FrameStore
from pipeline.runtime import checkpoint
from pipeline.runtime.inference import load_model
from pipeline.runtime.sampling import sample_videos
from pipeline.stages.evaluate.common import EvaluateConfig
from pipeline.stages.evaluate.generator import (
    _accuracy,
    _generated,
    _store_shapes,
    acd_metrics,
    i3d_features,
    inception_metrics,
    load_i3d,
    shape_fill_metrics,
)
from pipeline.stages.train import make_update

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------
# Fréchet distance and feature statistics


def closed_form(mu1, var1, mu2, var2) -> float:
    """FD of N(mu1, diag var1) and N(mu2, diag var2): ||mu1 - mu2||² + Σ(σ1 + σ2 - 2√(σ1σ2))."""
    return float(((mu1 - mu2) ** 2).sum() + (var1 + var2 - 2 * np.sqrt(var1 * var2)).sum())


def test_frechet_distance_diagonal_gaussians():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    var1, var2 = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
    fd = frechet_distance(
        torch.tensor(mu1),
        torch.diag(torch.tensor(var1)),
        torch.tensor(mu2),
        torch.diag(torch.tensor(var2)),
    )
    assert fd == pytest.approx(closed_form(mu1, var1, mu2, var2), rel=1e-9)
    same = frechet_distance(
        torch.tensor(mu1),
        torch.diag(torch.tensor(var1)),
        torch.tensor(mu1),
        torch.diag(torch.tensor(var1)),
    )
    assert same == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_rotated_gaussians():
    """Covariances sharing eigenvectors Q: s = Q diag(v) Qᵀ, the closed form holds in Q's basis;
    the distance is symmetric and rotation invariant."""
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    var1, var2 = rng.uniform(0.05, 2, 6), rng.uniform(0.05, 2, 6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = q @ np.diag(var1) @ q.T, q @ np.diag(var2) @ q.T
    t = [torch.tensor(x) for x in (mu1, s1, mu2, s2)]
    fd = frechet_distance(*t)
    assert fd == pytest.approx(closed_form(q.T @ mu1, var1, q.T @ mu2, var2), rel=1e-8)
    assert frechet_distance(t[2], t[3], t[0], t[1]) == pytest.approx(fd, rel=1e-8)
    # general (non-commuting) covariances: tr((s1 s2)^½) from the eigenvalues of s1 s2
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    c1, c2 = a @ a.T, b @ b.T
    expect = (
        np.trace(c1) + np.trace(c2) - 2 * np.sqrt(np.linalg.eigvals(c1 @ c2).real.clip(0)).sum()
    )
    got = frechet_distance(torch.zeros(6), torch.tensor(c1), torch.zeros(6), torch.tensor(c2))
    assert got == pytest.approx(expect, rel=1e-7)


def test_feature_statistics_and_sampled_gaussians():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 4))
    mu, cov = feature_statistics(torch.tensor(x, dtype=torch.float32))
    assert mu.dtype == torch.float64
    np.testing.assert_allclose(mu.numpy(), x.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cov.numpy(), np.cov(x, rowvar=False), rtol=1e-5, atol=1e-6)
    # samples of two known Gaussians: the estimate approaches the closed form
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var1, var2 = np.array([1.0, 0.5, 2.0]), np.array([0.25, 1.0, 1.0])
    a = rng.normal(size=(20000, 3)) * np.sqrt(var1) + mu1
    b = rng.normal(size=(20000, 3)) * np.sqrt(var2) + mu2
    fd = frechet_distance(
        *feature_statistics(torch.tensor(a)), *feature_statistics(torch.tensor(b))
    )
    assert fd == pytest.approx(closed_form(mu1, var1, mu2, var2), rel=0.03)
    with pytest.raises(ValueError):
        feature_statistics(torch.zeros(1, 3))


# ---------------------------------------------------------------------------------------------
# ACD


def test_average_content_distance_constructed():
    constant = torch.full((2, 5, 3), 0.3)  # per-frame descriptors (B, T, D)
    assert average_content_distance(constant) == 0.0
    # one gray video whose frames have colour 0, 0.5, 1: pair distances 0.5, 1, 0.5 -> mean 2/3
    video = torch.tensor([[[0.0], [0.5], [1.0]]])
    assert average_content_distance(video) == pytest.approx(2 / 3)
    # RGB: frames (0,0,0) and (1,1,1) are √3 apart; averaged with a constant video -> √3 / 2
    rgb = torch.zeros(2, 2, 3)
    rgb[0, 1] = 1.0
    assert average_content_distance(rgb) == pytest.approx(math.sqrt(3) / 2)
    feats = torch.tensor([[[0.0, 0.0], [3.0, 4.0]]])  # features: used as they are
    assert average_content_distance(feats) == pytest.approx(5.0)
    # frames without an object (NaN) are left out, and so are videos with < 2 frames left
    gappy = torch.tensor([[[0.0], [float("nan")], [1.0]], [[5.0], [float("nan")], [float("nan")]]])
    assert average_content_distance(gappy) == pytest.approx(1.0)
    assert described_videos(gappy) == 1
    assert math.isnan(average_content_distance(torch.full((2, 3, 3), float("nan"))))
    with pytest.raises(ValueError, match="object_colours"):
        average_content_distance(torch.zeros(2, 4, 3, 4, 4))  # frames: not descriptors
    with pytest.raises(ValueError):
        average_content_distance(torch.zeros(2, 1, 3))


def test_acd_is_the_colour_of_the_object_not_of_the_frame():
    """A small square (4 % of the frame) whose colour drifts from red to blue while it moves:
    ACD on the object's pixels sees the full drift (√2 between the first and last frame);
    the whole frame's mean colour dilutes it 25x. A steady object moving: ACD 0, its
    anti-aliased rim left out (interior)."""
    frames = torch.zeros(1, 5, 3, 20, 20)
    for t in range(5):
        frames[0, t, 0, 2 + t : 6 + t, 3:7] = 1.0 - t / 4  # red -> blue
        frames[0, t, 2, 2 + t : 6 + t, 3:7] = t / 4
    masks = interior(object_masks(frames))
    assert masks.sum(dim=(-2, -1)).tolist() == [[4] * 5]  # the 2x2 core of the 4x4 square
    colours = object_colours(frames, masks)
    torch.testing.assert_close(colours[0, -1], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    pairs = [math.sqrt(2) * abs(i - j) / 4 for i in range(5) for j in range(5) if i != j]
    acd = average_content_distance(colours)
    assert acd == pytest.approx(sum(pairs) / len(pairs))
    whole = average_content_distance(frames.mean(dim=(-2, -1)))
    assert whole == pytest.approx(acd * 16 / 400)  # diluted by the object's 4 % of the frame
    # a steady colour with a blended rim: the rim changes as the object moves, the core not
    steady = torch.full((1, 4, 3, 20, 20), 0.1)
    for t in range(4):
        steady[0, t, :, 5:10, 5 + t : 10 + t] = torch.tensor([0.9, 0.5, 0.2])[:, None, None]
        steady[0, t, :, 5:10, 10 + t] = 0.5  # an anti-aliased edge
    core = object_colours(steady, interior(object_masks(steady)))
    assert average_content_distance(core) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="masks"):
        object_colours(frames, masks[..., :10])


def test_figure_masks_take_the_stick_figure_and_neither_sky_nor_floor():
    videos = list(stick_figures(6, 3, size=32, seed=0))
    frames = torch.from_numpy(np.stack([v for _, v, _, _ in videos])).permute(0, 1, 4, 2, 3)
    x = frames.float() / 255
    masks = figure_masks(x)  # (6, 3, 32, 32)
    pix = x.permute(0, 1, 3, 4, 2)  # (B, T, H, W, C)

    def near(colours: list) -> torch.Tensor:  # pixels within 2/255 of one of the colours
        c = torch.tensor(colours, dtype=torch.float32) / 255  # (B, K, C)
        d = (pix[:, :, :, :, None] - c[:, None, None, None]).norm(dim=-1)
        return d.amin(dim=-1) < 2 / 255

    figure = near([a["colors"] for _, _, a, _ in videos])
    background = near([[a["sky"], a["floor"]] for _, _, a, _ in videos])
    assert background.any() and figure.any()
    assert masks[figure].all() and not masks[background].any()
    colours = object_colours(x, masks)
    assert torch.isfinite(colours).all()
    assert average_content_distance(colours) < 0.05  # the same figure in every frame
    # evaluate's acd: by the store's source; none for natural video
    real = frames.permute(0, 1, 3, 4, 2).numpy()  # uint8 (N, T, H, W, C)
    acd = acd_metrics(real, real, "stick_figures")
    assert acd["pixels"] == "figure" and acd["generated"] == acd["real"] < 0.05
    assert acd["ratio"] == pytest.approx(1.0) and acd["videos"] == {"generated": 6, "real": 6}
    assert acd_metrics(real, real, "npy") is None


def test_inception_score_closed_forms():
    """Confident and balanced over K classes: IS = K; every posterior uniform, or every sample
    the same class: IS = 1; half the classes, used evenly: K / 2."""
    k = 4
    confident = torch.eye(k).repeat(5, 1) * 50.0  # 20 samples, each one class, 5 per class
    assert inception_score(confident, splits=1)[0] == pytest.approx(k, rel=1e-6)
    mean, std = inception_score(confident, splits=5)  # parts of 4: each has every class
    assert mean == pytest.approx(k, rel=1e-6) and std == pytest.approx(0.0, abs=1e-6)
    assert inception_score(torch.zeros(20, k), splits=2)[0] == pytest.approx(1.0)
    one_class = torch.tensor([[50.0, 0.0, 0.0, 0.0]]).repeat(20, 1)
    assert inception_score(one_class)[0] == pytest.approx(1.0, abs=1e-6)
    half = torch.eye(k)[:2].repeat(10, 1) * 50.0
    assert inception_score(half, splits=1)[0] == pytest.approx(k / 2, rel=1e-6)
    # a part's p(y) is its own: parts of one class each score 1, the whole set K
    sorted_ = torch.eye(k).repeat_interleave(5, dim=0) * 50.0
    assert inception_score(sorted_, splits=4)[0] == pytest.approx(1.0, abs=1e-6)
    # evaluate: 10 parts when each holds >= 20 videos of both sets, fewer otherwise
    assert inception_metrics(torch.zeros(250, k), torch.zeros(300, k))["splits"] == 10
    got = inception_metrics(confident[:19], confident)
    assert got["splits"] == 1 and got["classes"] == k and got["real"] == pytest.approx(k)
    assert inception_metrics(torch.zeros(60, k), torch.zeros(60, k))["splits"] == 3
    with pytest.raises(ValueError):
        inception_score(torch.zeros(3, k), splits=10)
    with pytest.raises(ValueError):
        inception_score(torch.zeros(3, 1), splits=1)


# ---------------------------------------------------------------------------------------------
# The video classifier


def test_classifier_shapes_and_any_length():
    torch.manual_seed(0)
    net = VideoClassifier(VideoClassifierConfig(frame_size=16, length=4, num_categories=3, width=4))
    net.eval()
    for steps in (4, 7):
        x = torch.rand(2, steps, 3, 16, 16)
        assert net(x).shape == (2, 3)
        assert net.frame_features(x).shape == (2, steps, net.feature_dim)
        assert net.features(x).shape == (2, net.feature_dim)
    with pytest.raises(ValueError):
        net(torch.rand(2, 4, 1, 16, 16))
    with pytest.raises(ValueError):
        VideoClassifierConfig(num_categories=1)
    assert isinstance(build_task("video_classifier", num_categories=2), VideoClassifierTask)


def bright_dark(n: int, seed: int) -> dict[str, torch.Tensor]:
    """Tiny data: label 1 videos are bright, label 0 dark, both noisy (8x8, 4 frames)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    frames = 0.25 + 0.5 * labels.view(-1, 1, 1, 1, 1) + 0.2 * torch.rand(n, 4, 3, 8, 8, generator=g)
    return {"frames": frames.clamp(0, 1), "label": labels}


def train_tiny_classifier(steps: int = 25) -> VideoClassifierTask:
    torch.manual_seed(0)
    task = VideoClassifierTask(
        frame_size=8, length=4, num_categories=2, width=4, dropout=0.0, lr=1e-2
    )
    update = make_update(task.make_optimizers(), 1.0)
    for step in range(steps):
        task.networks.train()
        logs = task.training_step(bright_dark(16, step), step, update)
    assert set(logs) == {"loss", "accuracy"}
    return task


def test_classifier_learns_tiny_data():
    task = train_tiny_classifier()
    net = task.inference_model().eval()
    held_out = bright_dark(32, 999)
    with torch.no_grad():
        accuracy = (net(held_out["frames"]).argmax(1) == held_out["label"]).float().mean()
    assert accuracy == 1.0
    with pytest.raises(ValueError, match="labelled"):
        task.training_step(held_out["frames"], 0, lambda loss, name: None)


def test_accuracy_matches_categories_by_name():
    # generator categories [a, b]; the classifier knows [b, a]: requested a -> classifier index 1
    fake_logits = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    acc = _accuracy(
        fake_logits,
        [0, 1, 0, 1],
        ["a", "b"],
        torch.tensor([[1.0, 0.0]] * 2),
        np.array([0, 0]),
        ["b", "a"],
        ["b", "a"],
    )
    assert acc["generated"] == 0.75
    assert acc["per_class"] == {"a": 0.5, "b": 1.0}
    assert acc["real"] == 1.0 and acc["ratio"] == 0.75
    assert _accuracy(fake_logits, None, [], fake_logits, None, [], None) is None


# ---------------------------------------------------------------------------------------------
# FVD's feature path, through an untrained TorchScript network


class TinyI3D(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(3, 6, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x)).mean(dim=(2, 3, 4))


def scripted_i3d(path: Path) -> Path:
    """The untrained network saved as TorchScript (the usual form of exported I3D weights)."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit: deprecated, still supported
        torch.jit.save(torch.jit.script(TinyI3D()), str(path))
    return path


def test_i3d_feature_path_untrained(tmp_path):
    net = load_i3d(str(scripted_i3d(tmp_path / "i3d.pt")), torch.device("cpu"))
    rng = np.random.default_rng(0)
    videos = rng.integers(0, 256, (6, 4, 8, 8, 1), dtype=np.uint8)  # gray: repeated to RGB
    feats = i3d_features(net, videos, 4, torch.device("cpu"), size=16)
    assert feats.shape == (6, 6)
    stats = feature_statistics(feats)
    assert frechet_distance(*stats, *stats) == pytest.approx(0.0, abs=1e-9)
    brighter = np.clip(videos.astype(int) + 80, 0, 255).astype(np.uint8)
    other = feature_statistics(i3d_features(net, brighter, 4, torch.device("cpu"), size=16))
    assert frechet_distance(*stats, *other) > 0


# ---------------------------------------------------------------------------------------------
# framecast evaluate of a generator


@pytest.fixture()
def shapes_setup(tmp_path):
    """A tiny labelled shapes store (16x16, 8 frames), a conditional MoCoGAN checkpoint and a
    classifier checkpoint trained for a few steps, both with the store's categories."""

    url = str(tmp_path / "shapes.zarr")
    store = FrameStore.create(url)
    for i, (_, frames, attrs) in enumerate(shapes(12, 8, size=16, seed=0)):
        store.write_video(f"s{i}", frames, {**attrs, "split": "test"})
    categories = list(range(6))
    torch.manual_seed(0)
    gen = MoCoGANTask(
        frame_size=16,
        length=8,
        dim_content=6,
        dim_motion=4,
        dim_noise=3,
        gen_channels=8,
        disc_channels=8,
        num_categories=6,
    )
    gen_path = tmp_path / "gen.pt"
    checkpoint.save(
        gen_path, gen, gen.make_optimizers(), 5, {"trainer": {}}, {"categories": categories}
    )
    cls = VideoClassifierTask(frame_size=16, length=8, num_categories=6, width=4)
    cls_path = tmp_path / "cls.pt"
    checkpoint.save(cls_path, cls, cls.make_optimizers(), 5, {}, {"categories": categories})
    return url, gen_path, cls_path


def test_evaluate_generator_metrics_json(shapes_setup, tmp_path):
    url, gen_path, cls_path = shapes_setup
    out = tmp_path / "ev"
    args = ["evaluate", f"checkpoint={gen_path}", f"store={url}", f"evaluate.out={out}"]
    args += ["evaluate.num_videos=8", "evaluate.batch_size=4"]
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["model"] == "mocogan" and m["videos"] == 8 and m["real_videos"] == 8
    assert m["length"] == 8
    acd = m["acd"]  # the colour of the shape's interior
    assert acd["pixels"] == "shape interior" and acd["real"] == pytest.approx(0.0, abs=1e-3)
    assert acd["videos"]["real"] == 8 and 0 <= acd["videos"]["generated"] <= 8
    assert acd["generated"] is None or acd["generated"] >= 0
    assert m["accuracy"] is None and m["frechet_distance"] is None and m["fvd"] is None
    assert m["inception_score"] is None and "acd_features" not in m
    assert any("classifier" in n for n in m["notes"]) and any("fvd" in n for n in m["notes"])
    assert (out / "samples.png").exists() and (out / "samples.gif").exists()
    # shape recognisability, generated beside real (a shapes store)
    sf = m["shape_fill"]
    assert set(sf) == {"bands", "generated", "real"} and set(sf["bands"]) == {"circle", "square"}
    keys = {"single_object", "circle_like", "square_like", "recognisable", "videos_recognisable"}
    keys |= {"read_circle", "read_square", "read_shape"}
    for side in ("generated", "real"):
        assert keys | {"fill_median", "template_iou_median"} == set(sf[side])
        assert all(0 <= sf[side][k] <= 1 for k in keys)
    assert sf["real"]["single_object"] >= 0.9 and sf["real"]["recognisable"] >= 0.8

    i3d = scripted_i3d(tmp_path / "i3d.pt")
    args += [f"evaluate.classifier={cls_path}", f"evaluate.i3d={i3d}", "evaluate.i3d_size=16"]
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    acc = m["accuracy"]
    assert 0 <= acc["generated"] <= 1 and 0 <= acc["real"] <= 1
    assert set(acc["per_class"]) == {str(c) for c in range(6)}  # balanced: 8 videos, 6 classes
    assert m["frechet_distance"] >= 0 and m["fvd"] >= 0
    score = m["inception_score"]  # 8 videos: one part
    assert score["splits"] == 1 and score["classes"] == 6
    for side in ("generated", "real"):
        assert 1 <= score[side] <= 6 and score[f"{side}_std"] == 0
    assert not any("fvd" in n for n in m["notes"])


def test_shape_fill_metrics_generated_beside_real(tmp_path):

    real = np.stack([f for _, f, _ in shapes(16, 4, size=32, seed=1, radius=(0.2, 0.3))])
    same = shape_fill_metrics(real, real)
    assert same["generated"] == same["real"]
    assert same["real"]["recognisable"] >= 0.9 and same["real"]["videos_recognisable"] >= 0.9
    assert same["bands"]["circle"][1] < same["bands"]["square"][0]
    # ragged objects: every other pixel column of the frame set back to the background colour
    ragged = real.copy()
    ragged[:, :, :, 1::2] = real[:, :, :1, :1]
    got = shape_fill_metrics(ragged, real)
    assert got["real"] == same["real"] and got["bands"] == same["bands"]
    assert got["generated"]["single_object"] == 0 and got["generated"]["recognisable"] == 0
    # round blobs read as circles, never as squares: square_like is the telling share
    ys, xs = np.mgrid[:32, :32]
    blob = np.exp(-((ys - 15.5) ** 2 + (xs - 15.5) ** 2) / (2 * 5.0**2))[..., None]
    blobs = np.broadcast_to((40 + 180 * blob).round().astype(np.uint8), real.shape).copy()
    got = shape_fill_metrics(blobs, real)["generated"]
    assert got["circle_like"] == 1 and got["square_like"] == 0
    assert same["real"]["square_like"] > 0.2  # 16 videos, about half of them squares
    blank = np.full_like(real, 90)
    none = shape_fill_metrics(blank, real)["generated"]
    assert none["single_object"] == 0 and none["recognisable"] == 0
    assert same["real"]["read_shape"] >= 0.95 and none["read_shape"] == 0
    assert got["read_square"] == 0  # the round blobs never read as squares


def test_shape_fill_metrics_by_requested_shape():

    videos = list(shapes(16, 4, size=32, seed=2, radius=(0.2, 0.3)))
    real = np.stack([f for _, f, _ in videos])
    truth = [a["shape"] for _, _, a in videos]
    assert set(truth) == {"circle", "square"}
    got = shape_fill_metrics(real, real, truth)["by_request"]
    assert set(got) == {"circle", "square"}
    assert sum(part["videos"] for part in got.values()) == 16
    assert all(part["read_as_requested"] >= 0.95 for part in got.values())
    assert all(part["nearer_requested"] >= part["read_as_requested"] for part in got.values())
    assert got["square"]["read_square"] == got["square"]["read_as_requested"]
    swapped = ["circle" if t == "square" else "square" for t in truth]
    got = shape_fill_metrics(real, real, swapped)["by_request"]
    assert all(part["read_as_requested"] <= 0.05 for part in got.values())
    assert all(part["nearer_requested"] <= 0.05 for part in got.values())
    assert "by_request" not in shape_fill_metrics(real, real)


def test_evaluate_a_shape_conditional_generator_by_requested_shape(tmp_path):

    url = str(tmp_path / "sm.zarr")
    store = FrameStore.create(url)
    for i, (_, frames, attrs) in enumerate(shapes(60, 8, size=16, seed=0, label="shape_motion")):
        store.write_video(f"s{i}", frames, {**attrs, "split": "test"})
    source, label_shapes = _store_shapes(url)
    assert source == "shapes" and label_shapes and len(label_shapes) == 12
    assert all(s == ("circle" if k < 6 else "square") for k, s in label_shapes.items())
    torch.manual_seed(0)
    gen = MoCoGANTask(frame_size=16, length=8, dim_content=6, dim_motion=4, dim_noise=3,
                      gen_channels=8, disc_channels=8, num_categories=12, projection=True,
                      ema=0.9)  # fmt: skip
    gen_path = tmp_path / "gen.pt"
    extra = {"categories": list(range(12))}
    checkpoint.save(gen_path, gen, gen.make_optimizers(), 5, {"trainer": {}}, extra)
    out = tmp_path / "ev"
    args = ["evaluate", f"checkpoint={gen_path}", f"store={url}", f"evaluate.out={out}"]
    assert main([*args, "evaluate.num_videos=12", "evaluate.batch_size=4"]) == 0
    by = json.loads((out / "metrics.json").read_text())["shape_fill"]["by_request"]
    assert set(by) == {"circle", "square"}  # categories i mod 12: 0-5 circles, 6-11 squares
    assert by["circle"]["videos"] == by["square"]["videos"] == 6
    for part in by.values():
        assert 0 <= part["read_as_requested"] <= part["nearer_requested"] <= 1
    # motion labels name both shapes: nothing to request
    assert _store_shapes(str(tmp_path / "sm.zarr"))[1] is not None
    plain = str(tmp_path / "motion.zarr")
    store = FrameStore.create(plain)
    for i, (_, frames, attrs) in enumerate(shapes(16, 8, size=16, seed=0)):
        store.write_video(f"s{i}", frames, {**attrs, "split": "test"})
    assert _store_shapes(plain) == ("shapes", None)


def test_evaluate_generator_notes_a_store_without_shapes(shapes_setup, tmp_path):

    url, gen_path, _ = shapes_setup
    other = str(tmp_path / "other.zarr")
    src, dst = FrameStore.open(url), FrameStore.create(other)
    for v in src.video_ids():
        dst.write_video(v, src.frames(v), {**src.attrs(v), "source": "npy"})
    out = tmp_path / "ev"
    args = ["evaluate", f"checkpoint={gen_path}", f"store={other}", f"evaluate.out={out}"]
    assert main([*args, "evaluate.num_videos=4", "evaluate.batch_size=4"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["shape_fill"] is None and any("shape_fill" in n for n in m["notes"])
    assert m["acd"] is None and any("acd skipped" in n and "npy" in n for n in m["notes"])


def test_evaluate_samples_the_videos_generate_makes(shapes_setup):
    """evaluate's generated videos are videos 0..N-1 of the run seeded evaluate.seed (as
    `framecast generate` makes them), video i asking for category i mod K, whatever the batch."""
    _, gen_path, _ = shapes_setup
    loaded = load_model(gen_path, "cpu", want=("generator",))
    ev = EvaluateConfig(num_videos=7, batch_size=3, seed=4)
    videos, cats = _generated(loaded.model, ev, 5)
    assert cats == [i % 6 for i in range(7)]
    assert videos.dtype == np.uint8 and videos.shape == (7, 5, 16, 16, 3)
    want = sample_videos(loaded.model, 4, 0, 7, 5, cats)  # one batch
    assert np.abs(videos.astype(int) - want.astype(int)).max() <= 1


def test_evaluate_generator_usage_errors(shapes_setup, tmp_path, capsys):
    url, gen_path, cls_path = shapes_setup
    base = ["evaluate", f"checkpoint={gen_path}", f"evaluate.out={tmp_path / 'x'}"]
    capsys.readouterr()
    assert main(base) == 2
    assert "store=URL" in capsys.readouterr().err
    assert main([*base, f"store={url}", f"evaluate.classifier={gen_path}"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "video_classifier" in err and "evaluate.classifier takes a classifier" in err
    state = tmp_path / "state.pt"
    torch.save(TinyI3D().state_dict(), state)
    assert main([*base, f"store={url}", f"evaluate.i3d={state}", "evaluate.num_videos=2"]) == 2
    assert "TorchScript" in capsys.readouterr().err
    # a predictor checkpoint with generator-only options
    lstm = build_task("lstm_autoencoder", frame_size=16, channels=3, hidden=8, context=3, horizon=2)
    pred = tmp_path / "pred.pt"
    checkpoint.save(pred, lstm, lstm.make_optimizers(), 1, {})
    args = ["evaluate", f"checkpoint={pred}", f"store={url}", f"evaluate.classifier={cls_path}"]
    assert main(args) == 2
    assert "generator checkpoints" in capsys.readouterr().err
