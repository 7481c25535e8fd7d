"""MoCoGAN: content fixed and motion varying over a clip, fixing content or motion, category
conditioning, discriminator shapes, determinism, and that training steps move all three
networks and their losses. Tiny sizes (16x16 frames, 8 channels) for CPU speed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from models import build_task
from models.mocogan import (
    Generator,
    ImageDiscriminator,
    MoCoGANConfig,
    MoCoGANTask,
    VideoDiscriminator,
    frame_owners,
    sample_clips,
    sample_frames,
)
from pipeline.datasets.shapes import MOTIONS
from pipeline.datasets.shapes import generate as generate_shapes
from pipeline.stages.train import make_update

SIZE, LENGTH = 16, 4
TINY = dict(
    frame_size=SIZE,
    length=LENGTH,
    dim_content=6,
    dim_motion=4,
    dim_noise=3,
    gen_channels=8,
    disc_channels=8,
)
CONFIG_YAML = Path(__file__).resolve().parents[2] / "configs" / "model" / "mocogan.yaml"


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_generator(seed: int = 0, **overrides) -> Generator:
    """A tiny generator in eval mode, its BatchNorm statistics set from one batch.

    At DCGAN initialisation (weights N(0, 0.02)) the running statistics (mean 0, var 1) leave
    eval-mode activations near zero and every frame near grey; a trained generator has
    statistics of its own activations, which this one batch stands in for.
    """
    torch.manual_seed(seed)
    gen = Generator(MoCoGANConfig(**{**TINY, **overrides}))
    norms = [m for m in gen.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.momentum = 1.0  # running statistics := this batch's
    with torch.no_grad():
        gen(**{k: v for k, v in gen.draw_codes(16, 4).items()})
    for m in norms:
        m.momentum = 0.1
    return gen.eval()


def tiny_task(seed: int = 0, **overrides) -> MoCoGANTask:
    torch.manual_seed(seed)
    return MoCoGANTask(**{**TINY, **overrides})


def shapes_batch(n: int = 4, length: int = LENGTH) -> dict[str, torch.Tensor]:
    """Real shape-motion clips (n, length, 3, 16, 16) in [0, 1] with their motion labels."""
    videos = list(generate_shapes(n, length, size=SIZE, seed=0))
    frames = np.stack([v[1] for v in videos])  # (n, T, H, W, C) uint8
    x = torch.from_numpy(frames).permute(0, 1, 4, 2, 3).float() / 255.0
    return {"frames": x, "label": torch.tensor([v[2]["label"] for v in videos])}


def record_latents(generator: Generator) -> list[torch.Tensor]:
    """The latent vectors [z_C, z_A, z_M(t)] fed to G_I, one (n·T, D) tensor per call."""
    seen: list[torch.Tensor] = []
    generator.image_generator.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    return seen


# ---------------------------------------------------------------------------------------------
# The generator: content fixed over time, motion varying


@pytest.mark.parametrize("size", [16, 32, 64, 128])
def test_sample_shapes_and_range(size):
    gen = tiny_generator(frame_size=size, gen_channels=4)
    videos, codes = gen.sample_with_codes(2, 3, seed=0)
    assert videos.shape == (2, 3, 3, size, size) and videos.dtype == torch.float32
    assert 0.0 <= videos.min() and videos.max() <= 1.0
    assert codes["content"].shape == (2, 6)
    assert codes["motion_noise"].shape == (2, 3, 3) and codes["motion"].shape == (2, 3, 4)
    assert "category" not in codes


def test_content_is_fixed_and_motion_varies_over_a_clip():
    gen = tiny_generator()
    latents = record_latents(gen)
    videos, codes = gen.sample_with_codes(3, 6, seed=0)
    z = latents[0].unflatten(0, (3, 6))  # (n, T, D) = [z_C | z_M(t)]
    content, motion = z[..., :6], z[..., 6:]
    assert torch.equal(content, codes["content"][:, None].expand(-1, 6, -1))  # same every frame
    assert torch.equal(motion, codes["motion"])
    steps = (motion[:, 1:] - motion[:, :-1]).abs().amax(dim=-1)  # (n, T-1)
    assert (steps > 1e-3).all()  # every frame has its own motion code
    assert not torch.allclose(codes["content"][0], codes["content"][1])  # videos differ
    # so the frames of one video differ from each other
    frame_change = (videos[:, 1:] - videos[:, :-1]).abs().amax(dim=(2, 3, 4))
    assert (frame_change > 1e-3).all()


def test_motion_codes_come_from_the_gru_over_fresh_noise():
    gen = tiny_generator()
    noise = torch.randn(2, 5, 3)
    codes = gen.motion_codes(noise)
    h = torch.zeros(2, 4)
    for t in range(5):
        h = gen.recurrent(noise[:, t], h)
        torch.testing.assert_close(codes[:, t], h)
    # a prefix of the noise gives the same prefix of codes: the motion is causal
    torch.testing.assert_close(gen.motion_codes(noise[:, :3]), codes[:, :3])


def test_fix_content_gives_one_content_with_different_motions():
    gen = tiny_generator()
    videos, codes = gen.sample_with_codes(3, 5, seed=0)
    same_content, c = gen.sample_with_codes(3, 5, seed=1, content=codes["content"][0])
    assert torch.equal(c["content"], codes["content"][:1].expand(3, -1))
    assert not torch.allclose(c["motion"][0], c["motion"][1])  # motions differ between videos
    assert not torch.allclose(same_content[0], same_content[1])
    # fix=motion: one motion, several contents
    same_motion, m = gen.sample_with_codes(3, 5, seed=2, motion=codes["motion_noise"][:1])
    assert torch.equal(m["motion"], codes["motion"][:1].expand(3, -1, -1))
    assert not torch.allclose(m["content"][0], m["content"][1])
    # the codes of a video reproduce it
    again, _ = gen.sample_with_codes(
        1, 5, content=codes["content"][1], motion=codes["motion_noise"][1]
    )
    torch.testing.assert_close(again[0], videos[1], atol=1e-6, rtol=0)
    # with one seed, fixing the content leaves the motions as they were
    _, c0 = gen.sample_with_codes(3, 5, seed=0, content=torch.zeros(6))
    assert torch.equal(c0["motion_noise"], codes["motion_noise"])
    with pytest.raises(ValueError, match="content"):
        gen.sample_with_codes(3, 5, content=torch.zeros(2, 6))


def test_sample_is_deterministic_by_seed_and_extends_with_length():
    gen = tiny_generator()
    a, codes_a = gen.sample_with_codes(2, 6, seed=5)
    b, codes_b = gen.sample_with_codes(2, 6, seed=5)
    assert torch.equal(a, b) and all(torch.equal(codes_a[k], codes_b[k]) for k in codes_a)
    c, _ = gen.sample_with_codes(2, 6, seed=6)
    assert not torch.allclose(a, c)
    shorter, _ = gen.sample_with_codes(2, 4, seed=5)  # a longer rollout extends a shorter one
    torch.testing.assert_close(a[:, :4], shorter, atol=1e-6, rtol=0)
    # an unseeded draw uses the global RNG
    torch.manual_seed(1)
    d, _ = gen.sample_with_codes(2, 6)
    torch.manual_seed(1)
    e, _ = gen.sample_with_codes(2, 6)
    assert torch.equal(d, e)


def test_category_conditioning_reaches_the_output():
    gen = tiny_generator(num_categories=3)
    latents = record_latents(gen)
    v0, c0 = gen.sample_with_codes(2, 4, category=0, seed=0)
    v1, c1 = gen.sample_with_codes(2, 4, category=1, seed=0)
    # only z_A changed ...
    assert torch.equal(c0["content"], c1["content"])
    assert torch.equal(c0["motion"], c1["motion"])
    assert c0["category"].tolist() == [0, 0] and c1["category"].tolist() == [1, 1]
    one_hot = latents[1].unflatten(0, (2, 4))[..., 6:9]
    assert torch.equal(one_hot, torch.tensor([0.0, 1.0, 0.0]).expand(2, 4, 3))
    # ... and the frames changed with it
    assert (v0 - v1).abs().amax(dim=(1, 2, 3, 4)).min() > 1e-2
    _, c = gen.sample_with_codes(3, 2, category=torch.tensor([2, 0, 1]), seed=0)
    assert c["category"].tolist() == [2, 0, 1]
    _, c = gen.sample_with_codes(40, 1, seed=0)  # no category given: drawn uniformly
    assert set(c["category"].tolist()) == {0, 1, 2}
    with pytest.raises(ValueError, match="category"):
        gen.sample_with_codes(1, 2, category=3)
    with pytest.raises(ValueError, match="no categories"):
        tiny_generator().sample_with_codes(1, 2, category=0)


def test_image_only_ablation_has_no_recurrent_motion():
    gen = tiny_generator(image_only=True)
    assert gen.recurrent is None
    _, codes = gen.sample_with_codes(2, 5, seed=0)
    assert torch.equal(codes["motion"], codes["motion_noise"])  # i.i.d. codes, frame by frame
    task = tiny_task(image_only=True)
    logs = task.training_step(shapes_batch()["frames"], 0, make_update(task.make_optimizers(), 1))
    assert np.isfinite(logs["loss"])


# ---------------------------------------------------------------------------------------------
# Discriminators and the sampling of their inputs


@pytest.mark.parametrize("size", [16, 32, 64])
@pytest.mark.parametrize("categories", [0, 5])
def test_discriminator_output_shapes(size, categories):
    torch.manual_seed(0)
    d_image = ImageDiscriminator(size, 3, 4)
    assert d_image(torch.rand(5, 3, size, size) * 2 - 1).shape == (5, 4, 4)  # 4x4 patches
    d_video = VideoDiscriminator(size, 3, 4, categories)
    for frames in (1, 3):
        logits, category_logits = d_video(torch.rand(2, frames, 3, size, size) * 2 - 1, noise=0.1)
        assert logits.shape == (2, frames, 4, 4)
        if categories:
            assert category_logits.shape == (2, categories)
        else:
            assert category_logits is None


def test_discriminator_inputs_are_sampled_as_in_the_paper():
    # videos whose pixel values say (video, frame): 10·b + t
    b, t = torch.meshgrid(torch.arange(3), torch.arange(8), indexing="ij")
    videos = (10 * b + t).float()[:, :, None, None, None].expand(3, 8, 1, 2, 2)
    torch.manual_seed(0)
    frames = sample_frames(videos, 3)  # one random frame of each video
    assert frames.shape == (3, 1, 2, 2)
    assert [int(v) // 10 for v in frames[:, 0, 0, 0]] == [0, 1, 2]
    assert len(sample_frames(videos, 7)) == 7  # cycles through the batch
    clips = sample_clips(videos, 5)  # a random run of consecutive frames of each video
    assert clips.shape == (3, 5, 1, 2, 2)
    values = clips[:, :, 0, 0, 0]
    assert torch.equal(values[:, 1:] - values[:, :-1], torch.ones(3, 4))
    assert torch.equal(values[:, 0] // 10, torch.arange(3).float())
    starts = set()
    for _ in range(20):
        starts.update((sample_clips(videos, 5)[:, 0, 0, 0, 0] % 10).int().tolist())
    assert starts == {0, 1, 2, 3}  # every start is possible
    assert sample_clips(videos, 8) is videos


# ---------------------------------------------------------------------------------------------
# Training


def snapshot(task: MoCoGANTask) -> dict[str, list[torch.Tensor]]:
    return {
        name: [p.detach().clone() for p in net.parameters()] for name, net in task.networks.items()
    }


def test_training_steps_move_every_network_and_both_losses():
    task = tiny_task(num_categories=len(MOTIONS))
    optimizers = task.make_optimizers()
    update = make_update(optimizers, None)
    calls = []

    def recording_update(loss, name):
        calls.append(name)
        update(loss, name)

    before = snapshot(task)
    batch = shapes_batch()
    logs = [task.training_step(batch, step, recording_update) for step in range(3)]
    assert calls == ["image_disc", "video_disc", "generator"] * 3  # D steps, then the G step
    after = snapshot(task)
    for name in ("generator", "image_disc", "video_disc"):
        moved = [not torch.equal(a, b) for a, b in zip(before[name], after[name])]
        assert all(moved), f"{name}: {moved.count(False)} parameter tensors did not change"
    keys = {"loss", "d_image", "d_video", "g_image", "g_video", "instance_noise"}
    assert set(logs[0]) == keys | {"category_real", "category_fake"}
    assert all(isinstance(v, float) and np.isfinite(v) for log in logs for v in log.values())
    for key in ("loss", "d_image", "d_video", "g_image", "g_video", "category_real"):
        assert len({log[key] for log in logs}) == 3, key  # every step changed it
    assert logs[0]["d_image"] == pytest.approx(2 * np.log(2), abs=0.1)  # D undecided at init


def skipping(update, skip: str):
    return lambda loss, name: None if name == skip else update(loss, name)


def test_discriminators_learn_to_tell_real_from_generated():
    task = tiny_task(instance_noise=0.0, lr=1e-2)
    update = skipping(make_update(task.make_optimizers(), None), "generator")  # G fixed
    batch = shapes_batch(8)["frames"]
    logs = [task.training_step(batch, step, update) for step in range(12)]
    for key in ("d_image", "d_video"):
        first, last = logs[0][key], np.mean([log[key] for log in logs[-3:]])
        assert last < 0.7 * first, (key, first, last)


def test_generator_learns_to_fool_fixed_discriminators():
    task = tiny_task(instance_noise=0.0, lr=1e-2)
    optimizers = task.make_optimizers()
    update = make_update(optimizers, None)
    batch = shapes_batch(8)["frames"]
    for step in range(6):  # first make the discriminators confident
        task.training_step(batch, step, skipping(update, "generator"))
    fixed_d = skipping(skipping(update, "image_disc"), "video_disc")
    logs = [task.training_step(batch, step, fixed_d) for step in range(10)]
    for key in ("g_image", "g_video"):
        first, last = logs[0][key], np.mean([log[key] for log in logs[-3:]])
        assert last < first, (key, first, last)


def test_spectral_norm_discriminators_are_one_lipschitz_per_layer_and_train():
    task = tiny_task(spectral_norm=True, num_categories=len(MOTIONS), instance_noise=0.0)
    for name in ("image_disc", "video_disc"):
        net = task.networks[name]
        assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
        layers = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Conv3d)]
        assert layers and all(torch.nn.utils.parametrize.is_parametrized(m) for m in layers)
    assert any(
        isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        for m in task.networks["generator"].modules()
    )  # the generator keeps its BatchNorm
    update = make_update(task.make_optimizers(), None)
    batch = shapes_batch(8)
    logs = [task.training_step(batch, step, update) for step in range(4)]
    assert all(np.isfinite(v) for log in logs for v in log.values())
    # After a few power iterations, every used weight W / sigma(W) has spectral norm ~1.
    for name in ("image_disc", "video_disc"):
        for m in task.networks[name].modules():
            if isinstance(m, torch.nn.Conv2d | torch.nn.Conv3d):
                sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
                assert sigma == pytest.approx(1.0, abs=0.1), (name, float(sigma))


def test_projection_discriminators_judge_each_input_against_its_category():
    task = tiny_task(projection=True, num_categories=len(MOTIONS), instance_noise=0.0)
    d_image, d_video = task.networks["image_disc"], task.networks["video_disc"]
    assert d_image.projection is not None and d_video.projection is not None
    batch = shapes_batch(6)
    frames, labels = batch["frames"] * 2 - 1, batch["label"]
    for net in (d_image, d_video):
        net.eval()
        with torch.no_grad():  # a non-zero embedding: the category must move the logits
            net.projection.embed.weight.normal_()
    with torch.no_grad():
        image_y = d_image(frames[:, 0], 0.0, labels)
        image_other = d_image(frames[:, 0], 0.0, (labels + 1) % len(MOTIONS))
        video_y, _ = d_video(frames, 0.0, labels)
        video_other, _ = d_video(frames, 0.0, (labels + 1) % len(MOTIONS))
    assert image_y.shape == (6, 4, 4) and video_y.shape == (6, LENGTH, 4, 4)
    assert not torch.allclose(image_y, image_other) and not torch.allclose(video_y, video_other)
    with pytest.raises(ValueError, match="needs the categories"):
        d_image(frames[:, 0])
    # the frames D_I sees come from the videos frame_owners names: their labels go with them
    assert frame_owners(7, 3).tolist() == [0, 1, 2, 0, 1, 2, 0]
    # it trains, D learning the embedding, and it needs labelled categories
    update = make_update(task.make_optimizers(), None)
    before = d_video.projection.embed.weight.detach().clone()
    logs = [task.training_step(batch, step, update) for step in range(3)]
    assert all(np.isfinite(v) for log in logs for v in log.values())
    assert not torch.equal(before, d_video.projection.embed.weight)
    with pytest.raises(ValueError, match="projection"):
        MoCoGANConfig(projection=True)
    with pytest.raises(ValueError, match="projection"):
        MoCoGANConfig(projection=True, num_categories=3, category_weight=0.0, infogan=1.0)


def test_ema_generator_averages_the_weights_and_is_the_one_that_samples():
    task = tiny_task(ema=0.9)
    online, average = task.networks["generator"], task.networks["generator_ema"]
    assert not any(p.requires_grad for p in average.parameters())  # no optimiser, no DDP
    assert set(task.make_optimizers()) == {"generator", "image_disc", "video_disc"}
    update = make_update(task.make_optimizers(), None)
    batch = shapes_batch()["frames"]
    prev = [p.detach().clone() for p in average.parameters()]
    for step in range(30):
        task.training_step(batch, step, update)
        beta = min(0.9, (1 + step) / (10 + step))
        expected = [a.lerp(p.detach(), 1 - beta) for a, p in zip(prev, online.parameters())]
        for e, a in zip(expected, average.parameters()):
            torch.testing.assert_close(a, e)
        prev = [p.detach().clone() for p in average.parameters()]
    # after 30 steps the average trails G: close to it, not equal
    gaps = [
        float((a - p).detach().abs().max())
        for a, p in zip(average.parameters(), online.parameters())
    ]
    assert 0 < max(gaps) < 0.1
    for b_avg, b in zip(average.buffers(), online.buffers()):
        assert torch.equal(b_avg, b)  # BatchNorm statistics are G's
    assert task.inference_model() is average
    plain = tiny_task()
    assert "generator_ema" not in plain.networks
    assert plain.inference_model() is plain.networks["generator"]
    with pytest.raises(ValueError, match="model.ema"):
        MoCoGANConfig(ema=1.0)


def test_labels_are_required_only_for_labelled_category_training():
    batch = shapes_batch()
    task = tiny_task(num_categories=6)
    update = make_update(task.make_optimizers(), None)
    with pytest.raises(ValueError, match="'label'"):
        task.training_step(batch["frames"], 0, update)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 5\]"):
        task.training_step({"frames": batch["frames"], "label": batch["label"] + 6}, 0, update)
    with pytest.raises(ValueError, match="frames"):
        task.training_step(batch["frames"][:, :, :1], 0, update)  # 1 channel, 3 expected
    # InfoGAN categories are discovered without labels
    info = tiny_task(num_categories=3, category_weight=0.0, infogan=1.0)
    logs = info.training_step(batch["frames"], 0, make_update(info.make_optimizers(), None))
    assert "category_fake" in logs and "category_real" not in logs
    # an unconditional model ignores labels
    plain = tiny_task()
    logs = plain.training_step(batch, 0, make_update(plain.make_optimizers(), None))
    assert "category_real" not in logs


def test_training_step_under_bf16_autocast():
    task = tiny_task(num_categories=6)
    update = make_update(task.make_optimizers(), 1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logs = task.training_step(shapes_batch(), 0, update)
    assert all(np.isfinite(v) for v in logs.values())
    videos, _ = task.inference_model().eval().sample_with_codes(2, 3, seed=0)
    assert videos.dtype == torch.float32


def test_instance_noise_anneals_to_zero():
    task = tiny_task(instance_noise=0.2, noise_anneal_steps=100)
    assert [task.noise_sigma(s) for s in (0, 50, 100, 500)] == pytest.approx([0.2, 0.1, 0, 0])
    assert tiny_task(noise_anneal_steps=0).noise_sigma(10**6) == pytest.approx(0.1)


# ---------------------------------------------------------------------------------------------
# The task's contract with the trainer, and the config


def test_task_contract():
    task = build_task("mocogan", **TINY)
    assert task.clip_length == LENGTH
    assert set(task.networks) == {"generator", "image_disc", "video_disc"}
    optimizers = task.make_optimizers()
    assert set(optimizers) == {"generator", "image_disc", "video_disc"}
    for opt in optimizers.values():
        assert opt.defaults["lr"] == 2e-4 and opt.defaults["betas"] == (0.5, 0.999)
    assert isinstance(task.inference_model(), Generator)
    config = task.config()
    assert config == dataclasses.asdict(MoCoGANConfig(**TINY))
    assert build_task(**config).config() == config  # checkpoints rebuild from config()


def test_config_yaml_documents_exactly_the_dataclass_defaults():
    text = CONFIG_YAML.read_text()
    values = yaml.safe_load(text)
    defaults = dataclasses.asdict(MoCoGANConfig())
    assert values == defaults
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert "#" in line, f"undocumented key: {line}"


def test_unknown_and_invalid_options():
    with pytest.raises(TypeError, match="dim_contnet"):
        MoCoGANTask(dim_contnet=5)
    for bad in (
        dict(frame_size=48),
        dict(video_disc_frames=20),
        dict(num_categories=1),
        dict(infogan=1.0),
        dict(num_categories=3, category_weight=0.0),
    ):
        with pytest.raises(ValueError):
            MoCoGANConfig(**bad)


def test_trainer_runs_mocogan_on_a_shapes_store(tmp_path):
    from pipeline.cli import main
    from pipeline.runtime import checkpoint

    store, run_dir = tmp_path / "shapes.zarr", tmp_path / "run"
    synth = ["synth", "data=shapes", f"store={store}", "data.size=16", "synth.num_videos=8"]
    assert main([*synth, "synth.length=6"]) == 0
    train = [
        "train",
        "model=mocogan",
        f"store={store}",
        f"run_dir={run_dir}",
        *[f"model.{k}={v}" for k, v in TINY.items()],
        "trainer.batch_size=4",
        "trainer.max_steps=3",
        "trainer.log_every=1",
    ]
    assert main(train) == 0
    ckpt = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    assert ckpt["step"] == 3 and set(ckpt["networks"]) == {"generator", "image_disc", "video_disc"}
    generator = checkpoint.restore_task(ckpt).inference_model().eval()
    videos, _ = generator.sample_with_codes(2, 7, seed=0)
    assert videos.shape == (2, 7, 3, SIZE, SIZE)
