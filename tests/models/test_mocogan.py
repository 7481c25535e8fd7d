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
    ClipVideoDiscriminator,
    Generator,
    ImageDiscriminator,
    InstanceNoise,
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
ROOT = Path(__file__).resolve().parents[2]
CONFIG_YAML = ROOT / "configs" / "model" / "mocogan.yaml"
PAPER_YAML = ROOT / "configs" / "model" / "mocogan_paper.yaml"


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


def test_clip_discriminator_judges_whole_clips_with_the_official_layers():
    """model.video_discriminator=clip: S = 64, T' = 16 gives the official layers (time 16 -> 13
    -> 10 -> 7 -> 4 -> 1 without temporal padding), one logit per clip and K category logits
    from the same last layer; shorter clips get shorter temporal kernels."""
    torch.manual_seed(0)
    d = ClipVideoDiscriminator(64, 16, 3, 4, num_categories=5)
    times = []
    d.head.register_forward_pre_hook(lambda m, args: times.append(args[0].shape[2:]))
    logits, categories = d(torch.rand(2, 16, 3, 64, 64) * 2 - 1, noise=0.1)
    assert logits.shape == (2, 1, 1, 1) and categories.shape == (2, 5)
    assert tuple(times[0]) == (4, 4, 4)  # 4 frames of 4x4 left for the last layer
    kernels = [m.kernel_size for m in d.modules() if isinstance(m, torch.nn.Conv3d)]
    assert kernels == [(4, 4, 4)] * 5
    assert d.head.out_channels == 1 + 5
    short = ClipVideoDiscriminator(16, 3, 3, 4, num_categories=0, projection=False)
    logits, categories = short(torch.rand(4, 3, 3, 16, 16))
    assert logits.shape == (4, 1, 1, 1) and categories is None
    with pytest.raises(ValueError, match="built for 3 frames"):
        short(torch.rand(4, 5, 3, 16, 16))
    # it trains in the task, conditional with projection and spectral norm too
    for extra in ({}, {"projection": True, "spectral_norm": True}):
        task = tiny_task(video_discriminator="clip", num_categories=len(MOTIONS), **extra)
        assert isinstance(task.networks["video_disc"], ClipVideoDiscriminator)
        update = make_update(task.make_optimizers(), None)
        logs = [task.training_step(shapes_batch(), step, update) for step in range(2)]
        assert all(np.isfinite(v) for log in logs for v in log.values())


class CountingNoise(InstanceNoise):
    def __init__(self, sigma: float) -> None:
        super().__init__(sigma)
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return super().__call__(x)


@pytest.mark.parametrize("layers", ["input", "all"])
def test_instance_noise_on_the_input_or_before_every_convolution(layers):
    """noise_layers=all as the official discriminators: D_I noises the input of every
    convolution, the last included; D_V of every one but the last (S = 32: D_I 3 convs, the
    patch D_V 3 and the clip D_V 4)."""
    torch.manual_seed(0)
    frames, clips = torch.rand(2, 3, 32, 32), torch.rand(2, 4, 3, 32, 32)
    nets = [
        (ImageDiscriminator(32, 3, 4, noise_layers=layers), frames, 3),
        (VideoDiscriminator(32, 3, 4, 0, noise_layers=layers), clips, 2),
        (ClipVideoDiscriminator(32, 4, 3, 4, 0, noise_layers=layers), clips, 3),
    ]
    for net, x, noised in nets:
        noise = CountingNoise(0.1)
        net(x, noise)
        assert noise.calls == (noised if layers == "all" else 1), type(net).__name__
        quiet = CountingNoise(0.0)
        torch.testing.assert_close(net.eval()(x, quiet), net(x, 0.0))  # σ = 0: no noise


def test_each_rank_draws_the_videos_it_holds_of_the_global_batch():
    """Rank 1 of 2, holding rows 4..7 of a global batch of 8, draws what one process draws
    for those rows: codes, D_I's frames, D_V's clips, instance noise. Other steps, other
    draws."""
    one, two = tiny_task(num_categories=6), tiny_task(num_categories=6)
    two.distribute(1, 2, seed=0)
    cpu = torch.device("cpu")
    gen = one.networks["generator"]
    rngs_a, noise_a = one.step_generators(5, 8, cpu)
    rngs_b, noise_b = two.step_generators(5, 4, cpu)
    codes_a, codes_b = gen.draw_codes_of(rngs_a, 6, cpu), gen.draw_codes_of(rngs_b, 6, cpu)
    for key in ("content", "motion_noise", "category"):
        assert torch.equal(codes_a[key][4:], codes_b[key]), key
    videos = torch.rand(8, 6, 3, 4, 4)
    frames_a = sample_frames(videos, 16, rngs_a)  # two frames per video
    frames_b = sample_frames(videos[4:], 8, rngs_b)
    assert torch.equal(frames_a[[4, 5, 6, 7, 12, 13, 14, 15]], frames_b)
    assert torch.equal(sample_clips(videos, 3, rngs_a)[4:], sample_clips(videos[4:], 3, rngs_b))
    x = torch.zeros(16, 2, 3)
    eps_a = InstanceNoise(0.5, noise_a, frame_owners(16, 8).tolist())(x)
    eps_b = InstanceNoise(0.5, noise_b, frame_owners(8, 4).tolist())(x[:8])
    assert torch.equal(eps_a[[4, 5, 6, 7, 12, 13, 14, 15]], eps_b)
    assert eps_a.std() == pytest.approx(0.5, rel=0.2)
    # another step, or rank 0's rows: other codes
    other = gen.draw_codes_of(one.step_generators(6, 8, cpu)[0], 6, cpu)
    assert not torch.allclose(other["content"], codes_a["content"])
    assert not torch.allclose(codes_a["content"][:4], codes_b["content"])
    # D_I's frames: image_batch / W per rank, a multiple of the global batch
    assert tiny_task().image_count(4) == 4
    assert tiny_task(image_batch=24).image_count(4) == 24
    wide = tiny_task(image_batch=16)
    wide.distribute(0, 2, seed=0)
    assert wide.image_count(4) == 8
    bad = tiny_task(image_batch=12)
    bad.distribute(0, 2, seed=0)
    with pytest.raises(ValueError, match="multiple of the global batch"):
        bad.image_count(4)


GLOBAL_BN_WORKER = """
import sys, torch
from models.mocogan import global_batch_norm
rank, store, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
torch.distributed.init_process_group(
    "gloo", init_method=f"file://{store}", rank=rank, world_size=2
)
torch.manual_seed(0)
x, w = torch.randn(8, 3, 5, 5), torch.randn(8, 3, 5, 5)
net = global_batch_norm(torch.nn.Sequential(torch.nn.BatchNorm2d(3)))
with torch.no_grad():
    net[0].weight.uniform_(0.5, 1.5)
    net[0].bias.normal_()
rows = slice(4 * rank, 4 * rank + 4)
mine = x[rows].clone().requires_grad_()
y = net(mine)
((y * w[rows]).sum() / 4).backward()  # this rank's mean loss, as under DDP
bn = net[0]
torch.save({"y": y.detach(), "x_grad": mine.grad, "w_grad": bn.weight.grad,
            "b_grad": bn.bias.grad, "mean": bn.running_mean, "var": bn.running_var}, out)
torch.distributed.destroy_process_group()
"""


def test_global_batch_norm_is_batch_norm_of_the_global_batch(tmp_path):
    """Two gloo processes with half a batch each: outputs, running statistics and gradients
    (input gradients summed over the ranks' losses, parameter gradients averaged as DDP
    averages them) equal one BatchNorm2d on the whole batch with the mean loss."""
    import subprocess
    import sys

    script = tmp_path / "worker.py"
    script.write_text(GLOBAL_BN_WORKER)
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    outs = [tmp_path / f"rank{r}.pt" for r in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(r), str(tmp_path / "store"), str(o)],
            env=env,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for r, o in enumerate(outs)
    ]
    for proc in procs:
        assert proc.wait(120) == 0, proc.stderr.read().decode()[-2000:]
    got = [torch.load(o, weights_only=True) for o in outs]
    torch.manual_seed(0)
    x, w = torch.randn(8, 3, 5, 5), torch.randn(8, 3, 5, 5)
    bn = torch.nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
    x.requires_grad_()
    y = bn(x)
    ((y * w).sum() / 8).backward()  # the global batch's mean loss
    torch.testing.assert_close(torch.cat([g["y"] for g in got]), y.detach())
    # rank r's input gradient is d(L_0 + L_1)/dx_r = W dL/dx_r
    torch.testing.assert_close(torch.cat([g["x_grad"] for g in got]) / 2, x.grad)
    for key, ref in (("w_grad", bn.weight.grad), ("b_grad", bn.bias.grad)):
        torch.testing.assert_close((got[0][key] + got[1][key]) / 2, ref)
    for g in got:
        torch.testing.assert_close(g["mean"], bn.running_mean)
        torch.testing.assert_close(g["var"], bn.running_var)


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
    # BatchNorm statistics are the average's own, not copies of G's
    assert not all(torch.equal(a, b) for a, b in zip(average.buffers(), online.buffers()))
    assert task.inference_model() is average
    plain = tiny_task()
    assert "generator_ema" not in plain.networks
    assert plain.inference_model() is plain.networks["generator"]
    with pytest.raises(ValueError, match="model.ema"):
        MoCoGANConfig(ema=1.0)


def batch_norms(net: torch.nn.Module) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    return [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def test_ema_batchnorm_statistics_are_those_of_the_averaged_weights():
    """update_average(step, codes): the averaged generator renders the step's codes in training
    mode, so its running statistics follow its own activations (G's differ: other weights)."""
    task = tiny_task(ema=0.5)
    online, average = task.networks["generator"], task.networks["generator_ema"]
    with torch.no_grad():
        for p in online.parameters():
            p.add_(0.3 * torch.randn_like(p))  # G has moved away from its average
    codes = online.draw_codes(8, LENGTH)
    first = {}
    for name, net in (("average", average), ("online", online)):
        norm = batch_norms(net)[0]
        norm.momentum = 1.0  # running statistics := this batch's
        norm.register_forward_pre_hook(lambda m, args, name=name: first.setdefault(name, args[0]))
    task.update_average(10**6, codes)  # beta = 0.5: halfway between the two
    x = first["average"]  # (n·T, c, 4, 4): the average's first activations on the codes
    norm = batch_norms(average)[0]
    torch.testing.assert_close(norm.running_mean, x.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(norm.running_var, x.var(dim=(0, 2, 3)))  # unbiased, as BatchNorm
    with torch.no_grad():
        online(codes["content"], codes["motion_noise"])
    assert not torch.allclose(norm.running_mean, batch_norms(online)[0].running_mean, atol=1e-3)
    # without codes the weights move and the statistics stay
    before = [b.clone() for b in average.buffers()]
    task.update_average(10**6)
    assert all(torch.equal(a, b) for a, b in zip(before, average.buffers()))


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
        assert opt.defaults["weight_decay"] == 0.0
    decayed = build_task("mocogan", **TINY, weight_decay=1e-5).make_optimizers()
    assert all(opt.defaults["weight_decay"] == 1e-5 for opt in decayed.values())
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


def test_paper_config_states_the_official_settings_each_with_its_source():
    """model=mocogan_paper: mocogan.yaml with the official code's values, every key sourced."""
    text = PAPER_YAML.read_text()
    paper = yaml.safe_load(text)
    assert paper.pop("defaults") == ["mocogan", "_self_"]
    for line in text.splitlines():
        if line and not line.startswith(("#", "defaults", "  - ")):
            assert "# " in line and (".py" in line), f"no source: {line}"
    cfg = MoCoGANConfig(**{**yaml.safe_load(CONFIG_YAML.read_text()), **paper})
    assert cfg.video_discriminator == "clip" and cfg.weight_decay == 1e-5
    assert cfg.noise_layers == "all" and cfg.noise_anneal_steps == 0
    task = MoCoGANTask(**{**dataclasses.asdict(cfg), **TINY})
    assert isinstance(task.networks["video_disc"], ClipVideoDiscriminator)


def test_checkpoints_from_before_the_official_options_still_load(tmp_path):
    """A checkpoint whose config predates video_discriminator, weight_decay and noise_layers
    rebuilds the networks it was saved from (the defaults are the old behaviour), strictly."""
    from pipeline.runtime import checkpoint

    task = tiny_task(num_categories=6, ema=0.9)
    path = tmp_path / "old.pt"
    checkpoint.save(path, task, task.make_optimizers(), 3, {"trainer": {}}, {"categories": []})
    ckpt = checkpoint.load(path)
    for key in ("video_discriminator", "weight_decay", "noise_layers"):
        del ckpt["model_config"][key]
    restored = checkpoint.restore_task(ckpt)  # load_state_dict is strict
    assert isinstance(restored.networks["video_disc"], VideoDiscriminator)
    for name, net in task.networks.items():
        for key, value in net.state_dict().items():
            assert torch.equal(value, restored.networks[name].state_dict()[key]), key
    optimizers = restored.make_optimizers()  # a resumed run loads the old optimiser state
    for name, state in ckpt["optimizers"].items():
        optimizers[name].load_state_dict(state)


def test_unknown_and_invalid_options():
    with pytest.raises(TypeError, match="dim_contnet"):
        MoCoGANTask(dim_contnet=5)
    for bad in (
        dict(frame_size=48),
        dict(video_disc_frames=20),
        dict(num_categories=1),
        dict(infogan=1.0),
        dict(num_categories=3, category_weight=0.0),
        dict(video_discriminator="global"),
        dict(noise_layers="some"),
        dict(weight_decay=-1.0),
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
