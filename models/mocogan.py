"""MoCoGAN: decomposing motion and content for video generation (Tulyakov et al., CVPR 2018).

A video of T frames comes from one latent path through image space:

    z_C ~ N(0, I_{dim_content})                  content: drawn once, fixed over the whole clip
    z_A = one-hot(a), a ~ U{0..K-1}              category (action), optional (K = num_categories)
    ε(t) ~ N(0, I_{dim_noise})                   fresh noise every step t = 1..T
    h(t) = GRUCell(ε(t), h(t-1)),  h(0) = 0      the motion network R_M
    z_M(t) = h(t)                                motion code of frame t
    x(t) = G_I([z_C, z_A, z_M(t)])               one image generator for every frame

So the content of a clip is one point and its motion a trajectory; holding z_C and redrawing
ε(1..T) gives the same content with another motion, and the reverse. (The official code also
draws h(0) ~ N(0, I); with fresh noise in every step that adds little and would make "the
motion" two tensors, so h(0) is zero here and ε(1..T) is the whole motion randomness.)

`image_only=True` is the paper's baseline without motion modelling: z_M(t) = ε(t), i.i.d. per
frame with no recurrence, so frames are generated independently given the content.

Two discriminators, trained with the non-saturating GAN loss (Goodfellow et al., 2014):

    D_I   patch-based 2-D conv net on single frames: one random frame of each video;
    D_V   3-D conv net on clips: a random run of T' consecutive frames of each video, with
          category logits (over K) when K > 0: the auxiliary classifier on real clips with
          their labels and on generated clips with their sampled categories (AC-GAN), and the
          paper's InfoGAN term Q(a | x) on generated clips, which needs no labels (`infogan`
          > 0, `category_weight` = 0). `video_discriminator` picks its shape: "patch" (the
          default: a logit per frame and patch, the categories from a linear head on pooled
          features) or "clip" (the official code's default, CategoricalVideoDiscriminator:
          convolutions down to one logit per clip, the K category logits from the same last
          layer).

    L_DI = -E log D_I(x) - E log(1 - D_I(G(z)))                          (frames)
    L_DV = -E log D_V(v) - E log(1 - D_V(G(z))) + λ_c CE(Q(v), y) + λ_i CE(Q(G(z)), a)
    L_G  = -E log D_I(G(z)) - E log D_V(G(z)) + (λ_c + λ_i) CE(Q(G(z)), a)

with D(·) = σ(logit) averaged over patches, y the true label of a real clip v, a the sampled
category. Instance noise (Sønderby et al., 2016): N(0, σ²) is added to the discriminators'
inputs, real and fake; σ falls linearly from `instance_noise` to 0 over `noise_anneal_steps`.
`noise_layers="all"` adds it before every convolution as the official code does (D_I: every
one; D_V: all but the last), not only to the input.

Training details, the paper's / official code's setting beside framecast's default. Every
default is the behaviour framecast had before the option existed: checkpoints and the recorded
CPU and GPU measurements (configs/pipeline/demo.yaml, bench/gpu/mocogan.sh) were made with it,
and no measurement here shows the official setting better. configs/model/mocogan_paper.yaml
selects every official value at once.

    option                  default              official (sergeytulyakov/mocogan, src/)
    video_discriminator     patch                clip (CategoricalVideoDiscriminator)
    weight_decay            0                    1e-5 on all three Adam optimisers
    noise_layers            input                all (a Noise layer before the convolutions)
    instance_noise          0.1                  --noise_sigma with --use_noise (both off by
                                                 default; 0.1 in the training commands
                                                 circulated with the code)
    noise_anneal_steps      10000 (σ falls to 0) 0 (σ constant)
    gradient clipping       trainer.clip_grad_norm = 1.0 for every family; the official code
                            clips nothing: trainer.clip_grad_norm=null (pipeline=demo does)

Data parallel (W Ray Train workers): the trainer gives each rank its slice of one global batch,
and `distribute` tells the task which slice. Every random choice of a step is made per video
of the global batch from `video_rng(video_seed(seed, step), g)`, g the video's index in the
global batch (models/protocols.py): its codes (z_C, z_A, ε), its frames for D_I, its clip for
D_V and its instance noise. BatchNorm layers become `GlobalBatchNorm`, whose statistics are
those of the global batch (sums all-reduced over the ranks, in the backward pass too). So W
workers train exactly as one worker on the concatenated batch, up to float rounding. (Not
torch's SyncBatchNorm: it refuses CPU tensors, so the gloo CPU test could not check it; the
maths is the same.)

Two options beyond the paper, both off by default: `projection` conditions D_I and D_V on the
category (Miyato & Koyama, 2018: logit(x, y) = ψ(φ(x)) + ⟨E[y], φ(x)⟩ per patch), so a
generated video is judged as "a real video of category y"; with shape x motion categories that
makes the generator draw the shape it is asked for, which the auxiliary classifier alone did
not within a CPU budget. `ema` samples from θ_avg, an exponential moving average of G's weights
(Yazıcı et al., 2019), which smooths the oscillation of adversarial training; its BatchNorm
statistics are its own, updated every step by a forward pass of θ_avg on the step's codes.

Frames are in [-1, 1] inside (tanh output, the DCGAN convention); every public entry point
takes and returns frames in [0, 1], the trainer's convention. Shapes: B videos, T frames,
(C, H, W) a frame, S = frame_size; clips are (B, T, C, H, W) like everywhere in framecast.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.protocols import code_ids, video_rng, video_seed
from models.task import TrainingTask, UpdateFn, family_config

VIDEO_DISCRIMINATORS = ("patch", "clip")  # model.video_discriminator
NOISE_LAYERS = ("input", "all")  # model.noise_layers


@dataclass
class MoCoGANConfig:
    """Options of the family; the fields are the keys of configs/model/mocogan.yaml."""

    name: str = "mocogan"  # registry key (models.FAMILIES)
    frame_size: int = 64  # S = H = W of a frame: a power of two >= 16 (64; 128 as an option)
    channels: int = 3  # C: 3 for RGB, 1 for Moving MNIST
    length: int = 16  # T: frames of a training clip (sampling takes any length)
    dim_content: int = 50  # z_C: content code, fixed over a clip
    dim_motion: int = 10  # z_M(t): motion code, the GRU's state
    dim_noise: int = 10  # ε(t): per-step noise fed to the GRU
    num_categories: int = 0  # K: one-hot category code z_A and D_V's classifier; 0 = none
    gen_channels: int = 64  # channels of G_I's last hidden layer (x2 per coarser level, max x8)
    disc_channels: int = 64  # channels of D_I's and D_V's first layer (x2 per level, max x8)
    video_disc_frames: int = 0  # T': frames per clip shown to D_V (0 = length)
    image_batch: int = 0  # frames shown to D_I per step, one per video (0 = batch size)
    video_discriminator: str = "patch"  # D_V: "patch" (logits per patch) | "clip" (official)
    lr: float = 2e-4  # Adam learning rate of all three optimisers
    beta1: float = 0.5  # Adam β1
    beta2: float = 0.999  # Adam β2
    weight_decay: float = 0.0  # Adam L2 weight decay of all three optimisers (official: 1e-5)
    instance_noise: float = 0.1  # σ of the Gaussian noise on discriminator inputs at step 0
    noise_anneal_steps: int = 10000  # steps over which σ falls linearly to 0 (0 = constant σ)
    noise_layers: str = "input"  # instance noise on D's input | "all": before every conv (official)
    infogan: float = 0.0  # λ_i: InfoGAN term CE(Q(G(z)), a) for G and D_V (0 = off)
    category_weight: float = 1.0  # λ_c: category cross-entropy (real: labels; fake: sampled a)
    image_only: bool = False  # ablation: z_M(t) = ε(t) i.i.d., no recurrent motion network
    spectral_norm: bool = False  # discriminators: W / σ(W) in every layer, no BatchNorm
    projection: bool = False  # D_I and D_V conditioned on the category: + ⟨E[y], φ(x)⟩ per patch
    ema: float = 0.0  # decay β of an exponential moving average of G's weights (0 = off)

    def __post_init__(self) -> None:
        size = self.frame_size
        if size < 16 or size & (size - 1):
            raise ValueError(f"model.frame_size={size} must be a power of two >= 16")
        for key in ("channels", "length", "dim_content", "dim_motion", "dim_noise"):
            if getattr(self, key) < 1:
                raise ValueError(f"model.{key}={getattr(self, key)} must be at least 1")
        for key in ("gen_channels", "disc_channels"):
            if getattr(self, key) < 1:
                raise ValueError(f"model.{key}={getattr(self, key)} must be at least 1")
        if self.num_categories < 0 or self.num_categories == 1:
            raise ValueError(
                f"model.num_categories={self.num_categories}: use 0 (unconditional) or >= 2"
            )
        if not 0 <= self.video_disc_frames <= self.length:
            raise ValueError(
                f"model.video_disc_frames={self.video_disc_frames} must be in [0, length="
                f"{self.length}] (0 = length)"
            )
        for key in ("image_batch", "noise_anneal_steps"):
            if getattr(self, key) < 0:
                raise ValueError(f"model.{key}={getattr(self, key)} must be >= 0")
        if self.video_discriminator not in VIDEO_DISCRIMINATORS:
            raise ValueError(
                f"model.video_discriminator={self.video_discriminator!r}: use "
                f"{' or '.join(VIDEO_DISCRIMINATORS)}"
            )
        if self.noise_layers not in NOISE_LAYERS:
            raise ValueError(
                f"model.noise_layers={self.noise_layers!r}: use {' or '.join(NOISE_LAYERS)}"
            )
        for key in ("lr", "instance_noise", "infogan", "category_weight", "weight_decay"):
            if getattr(self, key) < 0:
                raise ValueError(f"model.{key}={getattr(self, key)} must be >= 0")
        if not 0 <= self.ema < 1:
            raise ValueError(f"model.ema={self.ema} must be in [0, 1) (0 = no moving average)")
        if self.infogan > 0 and self.num_categories == 0:
            raise ValueError("model.infogan > 0 needs model.num_categories >= 2")
        if self.num_categories and self.category_weight == 0 and self.infogan == 0:
            raise ValueError(
                "model.num_categories > 0 needs a category loss: model.category_weight > 0 "
                "(labelled data) or model.infogan > 0 (unsupervised categories)"
            )
        if self.projection and not (self.num_categories and self.category_weight > 0):
            raise ValueError(
                "model.projection=true conditions the discriminators on the true category of "
                "each real video: it needs model.num_categories >= 2 and model.category_weight "
                "> 0 (labelled data)"
            )

    @property
    def needs_labels(self) -> bool:
        """Whether training needs the true category of each real video."""
        return self.num_categories > 0 and self.category_weight > 0

    @property
    def clip_frames(self) -> int:
        """T': frames per clip for D_V."""
        return self.video_disc_frames or self.length


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation (Radford et al., 2016): conv weights N(0, 0.02), norm scales
    N(1, 0.02), biases 0."""
    if isinstance(module, nn.Conv2d | nn.Conv3d | nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm3d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def spectral_normalise(module: nn.Module) -> nn.Module:
    """W -> W / σ(W) for every conv and linear weight in `module` (in place; call after
    init_weights: the parametrization keeps the initial W as its `original`)."""
    for layer in list(module.modules()):
        if isinstance(layer, nn.Conv2d | nn.Conv3d | nn.Linear):
            nn.utils.parametrizations.spectral_norm(layer)
    return module


def _levels(frame_size: int) -> int:
    """Doublings between a 4x4 map and an S x S frame: log2(S) - 2."""
    return int(math.log2(frame_size)) - 2


# ---------------------------------------------------------------------------------------------
# Generator


class ImageGenerator(nn.Module):
    """G_I, DCGAN-style: a latent vector -> one frame in [-1, 1].

        z (N, D) -> 4x4 (transposed conv 4x4, stride 1) -> 8x8 -> ... -> S x S
    each step a 4x4 transposed conv with stride 2, BatchNorm and ReLU; the last maps to C
    channels and tanh. Channels: gen_channels at S/2, doubling per coarser level, at most x8
    (S = 64: 512 @ 4x4, 256 @ 8x8, 128 @ 16x16, 64 @ 32x32, C @ 64x64, the paper's G_I).
    """

    def __init__(self, dim_in: int, frame_size: int, channels: int, width: int) -> None:
        super().__init__()
        levels = _levels(frame_size)  # transposed convs after the first: S = 4 · 2^levels

        def ch(k: int) -> int:  # channels of the map at 4 · 2^k pixels, k = 0 .. levels - 1
            return width * min(8, 2 ** (levels - 1 - k))

        layers: list[nn.Module] = [
            nn.ConvTranspose2d(dim_in, ch(0), 4, 1, 0, bias=False),
            nn.BatchNorm2d(ch(0)),
            nn.ReLU(inplace=True),
        ]
        for k in range(1, levels):
            layers += [
                nn.ConvTranspose2d(ch(k - 1), ch(k), 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch(k)),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ConvTranspose2d(ch(levels - 1), channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z[:, :, None, None])  # (N, D) -> (N, C, S, S)


class Generator(nn.Module):
    """The video generator: content code, category code, GRU motion codes, and G_I per frame.

    `forward(content, motion_noise, category)` returns frames in [-1, 1] with gradients, for
    training; `sample(...)` returns videos in [0, 1] and their codes, for users. BatchNorm makes
    a batch's frames depend on each other in train mode: call `.eval()` before sampling for
    videos that depend only on their own codes (and the same seed giving the same videos).
    """

    def __init__(self, cfg: MoCoGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # image_only: no R_M, the per-step noise itself is the motion code.
        self.recurrent = None if cfg.image_only else nn.GRUCell(cfg.dim_noise, cfg.dim_motion)
        self.dim_motion_code = cfg.dim_noise if cfg.image_only else cfg.dim_motion
        dim_in = cfg.dim_content + cfg.num_categories + self.dim_motion_code
        self.image_generator = ImageGenerator(
            dim_in, cfg.frame_size, cfg.channels, cfg.gen_channels
        )
        self.image_generator.apply(init_weights)

    def motion_codes(self, noise: Tensor) -> Tensor:
        """z_M(1..T) (n, T, dim_motion) from ε(1..T) (n, T, dim_noise): h(t) = GRU(ε(t), h(t-1))
        from h(0) = 0; image_only: ε itself."""
        if self.recurrent is None:
            return noise
        h = noise.new_zeros(noise.shape[0], self.cfg.dim_motion)
        codes = []
        for t in range(noise.shape[1]):
            h = self.recurrent(noise[:, t], h)
            codes.append(h)
        return torch.stack(codes, dim=1)

    def render(self, content: Tensor, motion: Tensor, category: Tensor | None = None) -> Tensor:
        """Frames (n, T, C, S, S) in [-1, 1] of codes: content (n, dim_content), motion codes
        z_M (n, T, dim_motion), category (n,) long (when num_categories > 0)."""
        n, steps = motion.shape[:2]
        parts = [content.unsqueeze(1).expand(-1, steps, -1)]  # z_C, the same in every frame
        if self.cfg.num_categories:
            if category is None:
                raise ValueError(f"num_categories={self.cfg.num_categories}: a category is needed")
            one_hot = F.one_hot(category, self.cfg.num_categories).to(motion.dtype)
            parts.append(one_hot.unsqueeze(1).expand(-1, steps, -1))  # z_A
        parts.append(motion)  # z_M(t)
        z = torch.cat(parts, dim=-1).to(motion.dtype)  # (n, T, D)
        return self.image_generator(z.flatten(0, 1)).unflatten(0, (n, steps))

    def forward(
        self, content: Tensor, motion_noise: Tensor, category: Tensor | None = None
    ) -> Tensor:
        """Frames (n, T, C, S, S) in [-1, 1] from z_C, ε(1..T) and (optionally) categories."""
        return self.render(content, self.motion_codes(motion_noise), category)

    def draw_codes(
        self,
        n: int,
        length: int,
        *,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Random codes of n videos: "content" (n, dim_content), "motion_noise" ε (n, length,
        dim_noise) and, when num_categories > 0, "category" (n,) uniform.

        Drawn in that order (content, category, noise), so overriding one code does not change
        the others; with a `generator` the noise is drawn step by step, so the noise of the first
        L steps is the same whatever `length` >= L is (longer videos extend shorter ones).
        """
        cfg = self.cfg
        if device is None:
            device = next(self.parameters()).device
        content = torch.randn(n, cfg.dim_content, device=device, generator=generator)
        codes = {"content": content}
        if cfg.num_categories:
            codes["category"] = torch.randint(
                cfg.num_categories, (n,), device=device, generator=generator
            )
        if generator is None:  # training: one call
            noise = torch.randn(n, length, cfg.dim_noise, device=device)
        else:  # seeded: step by step (CPU randn of a larger tensor is not a prefix-extension)
            steps = [
                torch.randn(n, cfg.dim_noise, device=device, generator=generator)
                for _ in range(length)
            ]
            noise = torch.stack(steps, dim=1)
        codes["motion_noise"] = noise
        return codes

    def draw_codes_of(
        self, generators: Sequence[torch.Generator], length: int, device: torch.device | str
    ) -> dict[str, Tensor]:
        """The codes of len(generators) videos, video i's drawn from generators[i] (CPU) as
        draw_codes(1, length, generator=...) draws one, stacked and moved to `device`: a video's
        codes do not depend on which other videos are drawn with it."""
        draws = [self.draw_codes(1, length, device="cpu", generator=g) for g in generators]
        return {k: torch.cat([d[k] for d in draws]).to(device) for k in draws[0]}

    @property
    def num_categories(self) -> int:
        return self.cfg.num_categories

    # The generator protocol (models/protocols.py): video i of a run seeded S takes its content
    # from draw c and its motion noise (and, unless requested, its category: the action is part
    # of the motion) from draw m, (c, m) = code_ids(i, fix), draw j coming from video_rng(S, j).
    @torch.no_grad()
    def sample(
        self,
        n: int,
        length: int,
        category: int | Sequence[int] | None = None,
        seed: int = 0,
        fix: str | None = None,
        start: int = 0,
    ) -> Tensor:
        """Videos start .. start+n-1 of the run seeded `seed`: (n, length, C, S, S) in [0, 1]."""
        pairs = [code_ids(i, fix) for i in range(start, start + n)]
        draws = {
            j: self.draw_codes(1, length, device="cpu", generator=video_rng(seed, j))
            for j in sorted({j for pair in pairs for j in pair})
        }
        content = torch.cat([draws[c]["content"] for c, _ in pairs])
        motion = torch.cat([draws[m]["motion_noise"] for _, m in pairs])
        cats: list[int] | None = None
        if self.cfg.num_categories:
            if category is None:
                cats = [int(draws[m]["category"]) for _, m in pairs]
            elif isinstance(category, int):
                cats = [category] * n
            else:
                cats = [int(c) for c in category]
        videos, _ = self.sample_with_codes(n, length, cats, content=content, motion=motion)
        return videos

    def drawn_categories(
        self, seed: int, indices: Sequence[int], fix: str | None = None
    ) -> list[int] | None:
        """The category each video of the run takes when none is requested (None when
        unconditional); drawn as `sample` draws it, without rendering."""
        if not self.cfg.num_categories:
            return None
        out = []
        for i in indices:
            m = code_ids(i, fix)[1]
            out.append(
                int(self.draw_codes(1, 1, device="cpu", generator=video_rng(seed, m))["category"])
            )
        return out

    @torch.no_grad()
    def sample_with_codes(
        self,
        n: int,
        length: int,
        category: int | Sequence[int] | Tensor | None = None,
        seed: int | None = None,
        content: Tensor | None = None,
        motion: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """n videos (n, length, C, S, S) in [0, 1] (float32) and their codes.

        category: an int for all, (n,) per video, or None (uniform; num_categories > 0 only).
        seed: codes from a CPU torch.Generator seeded with it (the same on any device), else
        from the global RNG. content: z_C, (dim_content,) or (1 | n, dim_content), to fix the
        content (`fix=content`: one content, n motions). motion: ε(1..length), (length,
        dim_noise) or (1 | n, length, dim_noise), to fix the motion (`fix=motion`). Codes not
        given are drawn as in `draw_codes`, so with one seed, giving one code leaves the
        others as they were.

        codes: "content" (n, dim_content), "motion_noise" (n, length, dim_noise), "motion"
        z_M (n, length, dim_motion), "category" (n,) when num_categories > 0; on the model's
        device. Pass codes["content"] or codes["motion_noise"] back to fix them.
        """
        cfg = self.cfg
        if n < 1 or length < 1:
            raise ValueError(f"need n >= 1 and length >= 1, got {n}, {length}")
        device = next(self.parameters()).device
        rng = None if seed is None else torch.Generator().manual_seed(int(seed))
        codes = self.draw_codes(n, length, device="cpu" if rng else device, generator=rng)
        codes = {k: v.to(device) for k, v in codes.items()}
        if content is not None:
            codes["content"] = _broadcast(content, n, (cfg.dim_content,), "content", device)
        if motion is not None:
            shape = (length, cfg.dim_noise)
            codes["motion_noise"] = _broadcast(motion, n, shape, "motion", device)
        if category is not None:
            if not cfg.num_categories:
                raise ValueError("category given, but this generator has no categories")
            cat = torch.as_tensor(category, dtype=torch.long, device=device).reshape(-1)
            if cat.numel() not in (1, n):
                raise ValueError(f"category: expected 1 or {n} values, got {cat.numel()}")
            if cat.min() < 0 or cat.max() >= cfg.num_categories:
                raise ValueError(f"category must be in [0, {cfg.num_categories - 1}]")
            codes["category"] = cat.expand(n).clone()
        codes["motion"] = self.motion_codes(codes["motion_noise"])
        frames = self.render(codes["content"], codes["motion"], codes.get("category"))
        videos = ((frames.float() + 1.0) / 2.0).clamp_(0.0, 1.0)
        return videos, codes


def _broadcast(
    value: Tensor, n: int, shape: tuple[int, ...], name: str, device: torch.device
) -> Tensor:
    """A code given for one video or for each of n: (*shape) or (1 | n, *shape) -> (n, *shape)."""
    value = torch.as_tensor(value, dtype=torch.float32, device=device)
    if tuple(value.shape) == shape:
        value = value.unsqueeze(0)
    if tuple(value.shape[1:]) != shape or value.shape[0] not in (1, n):
        raise ValueError(
            f"{name}: expected shape {shape} or (1 or {n}, *{shape}), got {tuple(value.shape)}"
        )
    return value.expand(n, *shape).clone()


# ---------------------------------------------------------------------------------------------
# Discriminators


class InstanceNoise:
    """The instance noise of one discriminator call: x -> x + σ ε, ε ~ N(0, I).

    Without `generators`, ε comes from the global RNG. With them (training), row r of every
    tensor it noises belongs to video owners[r] (default: row r to video r) and takes its ε
    from generators[owners[r]], each video's rows drawn together in row order: the noise of a
    video is the same whichever other videos share the batch (or the rank, in data-parallel
    training). Called once per noised layer, in the order of the layers.
    """

    def __init__(
        self,
        sigma: float,
        generators: Sequence[torch.Generator] | None = None,
        owners: Sequence[int] | None = None,
    ) -> None:
        self.sigma = float(sigma)
        self.generators = generators
        if generators is not None:
            owners = list(range(len(generators))) if owners is None else [int(o) for o in owners]
            self.groups, self.order = _groups(owners)
            self.in_order = bool(torch.equal(self.order, torch.arange(len(self.order))))

    def __call__(self, x: Tensor) -> Tensor:
        if self.sigma <= 0:
            return x
        if self.generators is None:
            return x + self.sigma * torch.randn_like(x)
        if x.shape[0] != len(self.order):
            raise ValueError(f"instance noise for {len(self.order)} rows, got {x.shape[0]}")
        draws = [
            torch.randn((k, *x.shape[1:]), generator=self.generators[o], device=x.device)
            for o, k in self.groups
        ]
        eps = torch.cat(draws)
        if not self.in_order:  # back to row order
            eps = eps[self.order.to(x.device)]
        return x + self.sigma * eps.to(x.dtype)


def _groups(owners: Sequence[int]) -> tuple[list[tuple[int, int]], Tensor]:
    """Rows grouped by owner: [(owner, its row count)] in order of first appearance, and the
    permutation (rows,) that puts the groups' rows, concatenated, back in row order."""
    rows: dict[int, list[int]] = {}
    for r, o in enumerate(owners):
        rows.setdefault(int(o), []).append(r)
    grouped = [r for mine in rows.values() for r in mine]
    order = torch.empty(len(grouped), dtype=torch.long)
    order[torch.tensor(grouped, dtype=torch.long)] = torch.arange(len(grouped))
    return [(o, len(mine)) for o, mine in rows.items()], order


def _noise_of(noise: float | InstanceNoise) -> InstanceNoise:
    return noise if isinstance(noise, InstanceNoise) else InstanceNoise(noise)


def _trunk_forward(trunk: nn.Sequential, x: Tensor, noise: InstanceNoise, every: bool) -> Tensor:
    """x through `trunk`, noised before its first convolution, and before every one if `every`
    (model.noise_layers="all")."""
    first = True
    for layer in trunk:
        if isinstance(layer, nn.Conv2d | nn.Conv3d) and (first or every):
            x = noise(x)
            first = False
        x = layer(x)
    return x


class Projection(nn.Module):
    """The class-conditional term of a projection discriminator (Miyato & Koyama, 2018), per
    patch: with φ(x) the trunk's features and E a learned embedding of the K categories,

        logit(x, y) = ψ(φ(x)) + ⟨E[y], φ(x)⟩

    so D judges "a real video of category y", not just "a real video": a generated square asked
    for as a circle is fake even if it is a perfect square. Beyond the paper (MoCoGAN conditions
    D_V through its auxiliary classifier only). The inner product is taken at every position of
    φ (N, c, ..., h, w) and averaged over the pixels of each patch logit's (h', w') grid.
    """

    def __init__(self, num_categories: int, channels: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_categories, channels)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(self, features: Tensor, category: Tensor, grid: tuple[int, int]) -> Tensor:
        """features (N, c, ..., h, w), category (N,) -> (N, ..., *grid)."""
        e = self.embed(category)  # (N, c)
        inner = (features * e.view(*e.shape, *[1] * (features.dim() - 2))).sum(1)
        return F.adaptive_avg_pool2d(inner, grid)  # (N, ..., h, w) -> (N, ..., h', w')


def _project(
    logits: Tensor, features: Tensor, projection: Projection | None, category: Tensor | None
) -> Tensor:
    """logits (N, ..., h', w') plus the projection term when D is conditional."""
    if projection is None:
        return logits
    if category is None:
        raise ValueError("a conditional (model.projection) discriminator needs the categories")
    return logits + projection(features, category, tuple(logits.shape[-2:]))


class ImageDiscriminator(nn.Module):
    """D_I: a patch discriminator on single frames (the paper's PatchImageDiscriminator).

        (N, C, S, S) -> S/2 -> ... -> 8x8 (4x4 convs, stride 2, LeakyReLU 0.2, BatchNorm
        after the first) -> 4x4 conv, stride 2 -> logits (N, 4, 4)

    a 4x4 grid of patch decisions at any S (S = 64: 4 stride-2 layers, the paper's D_I).
    spectral: spectral normalisation in every layer instead of BatchNorm. projection_categories
    K > 0: conditioned on each frame's category (Projection). noise_layers: instance noise on
    the input, or ("all") before every convolution, the last included (the official
    PatchImageDiscriminator).
    """

    def __init__(
        self,
        frame_size: int,
        channels: int,
        width: int,
        spectral: bool = False,
        projection_categories: int = 0,
        noise_layers: str = "input",
    ) -> None:
        super().__init__()
        self.noise_every_layer = noise_layers == "all"
        layers: list[nn.Module] = [
            nn.Conv2d(channels, width, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        c = width
        for k in range(1, _levels(frame_size) - 1):  # down to 8x8
            c_out = width * min(8, 2**k)
            layers += [
                nn.Conv2d(c, c_out, 4, 2, 1, bias=spectral),
                nn.Identity() if spectral else nn.BatchNorm2d(c_out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            c = c_out
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Conv2d(c, 1, 4, 2, 1)
        self.projection = Projection(projection_categories, c) if projection_categories else None
        self.apply(init_weights)
        if spectral:
            spectral_normalise(self)

    def forward(
        self,
        frames: Tensor,
        noise: float | InstanceNoise = 0.0,
        category: Tensor | None = None,
    ) -> Tensor:
        """frames (N, C, S, S) in [-1, 1] (and their categories (N,) when conditional) ->
        patch logits (N, 4, 4). noise: σ, or the InstanceNoise of this call."""
        noise, every = _noise_of(noise), self.noise_every_layer
        h = _trunk_forward(self.trunk, frames, noise, every)  # (N, c, 8, 8)
        logits = self.head(noise(h) if every else h).squeeze(1)
        return _project(logits, h, self.projection, category)


class VideoDiscriminator(nn.Module):
    """D_V: a patch discriminator on clips, 3-D convolutions, with the category head Q.

        (B, T', C, S, S) -> (B, C, T', S, S) -> 3x4x4 convs, stride (1, 2, 2), padding 1,
        LeakyReLU 0.2, BatchNorm after the first, down to 8x8 -> patch logits (B, T', 4, 4)
        and, when K > 0, category logits (B, K) = Linear(mean of the trunk's features).

    Space halves per layer and time keeps its length, so any T' >= 1 works; each patch logit
    sees 9 frames (4 temporal kernels of 3). spectral, projection: as in ImageDiscriminator
    (the projection uses the same K categories as the head). noise_layers: instance noise on
    the input, or ("all") before every convolution but the last (the official
    PatchVideoDiscriminator).
    """

    def __init__(
        self,
        frame_size: int,
        channels: int,
        width: int,
        num_categories: int,
        spectral: bool = False,
        projection: bool = False,
        noise_layers: str = "input",
    ) -> None:
        super().__init__()
        self.noise_every_layer = noise_layers == "all"
        kernel, stride, pad = (3, 4, 4), (1, 2, 2), (1, 1, 1)
        layers: list[nn.Module] = [
            nn.Conv3d(channels, width, kernel, stride, pad),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        c = width
        for k in range(1, _levels(frame_size) - 1):
            c_out = width * min(8, 2**k)
            layers += [
                nn.Conv3d(c, c_out, kernel, stride, pad, bias=spectral),
                nn.Identity() if spectral else nn.BatchNorm3d(c_out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            c = c_out
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Conv3d(c, 1, kernel, stride, pad)
        self.categories = nn.Linear(c, num_categories) if num_categories else None
        self.projection = Projection(num_categories, c) if projection else None
        self.apply(init_weights)
        if spectral:
            spectral_normalise(self)

    def forward(
        self,
        clips: Tensor,
        noise: float | InstanceNoise = 0.0,
        category: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """clips (B, T', C, S, S) in [-1, 1] (and their categories (B,) when conditional) ->
        (patch logits (B, T', 4, 4), category logits (B, K) or None). noise: σ, or the
        InstanceNoise of this call."""
        noise = _noise_of(noise)
        x = clips.transpose(1, 2)  # (B, C, T', S, S)
        h = _trunk_forward(self.trunk, x, noise, self.noise_every_layer)  # (B, c, T', 8, 8)
        logits = _project(self.head(h).squeeze(1), h, self.projection, category)
        categories = None if self.categories is None else self.categories(h.mean(dim=(2, 3, 4)))
        return logits, categories


class ClipVideoDiscriminator(nn.Module):
    """D_V as the official code's default (CategoricalVideoDiscriminator): one decision per
    clip, and the category logits from the same last layer.

        (B, T', C, S, S) -> (B, C, T', S, S) -> log2(S) - 2 convs, kernel (k_t, 4, 4), stride
        (1, 2, 2), padding (0, 1, 1), LeakyReLU 0.2, BatchNorm after the first, down to 4x4
        -> conv, kernel (t, 4, 4) without padding -> (B, 1 + K): the clip's logit (B, 1, 1, 1)
        and, when K > 0, its category logits (B, K).

    Time is not padded: each layer's temporal kernel k_t = min(4, frames left) takes k_t - 1
    frames off, and the last layer spans the t frames that remain, so the decision sees the
    whole clip (S = 64, T' = 16: 16 -> 13 -> 10 -> 7 -> 4 -> 1, the official layers; a shorter
    clip gets shorter temporal kernels). Built for exactly T' = `frames`. spectral, projection
    (on the trunk's features averaged over time), noise_layers: as in VideoDiscriminator.
    """

    def __init__(
        self,
        frame_size: int,
        frames: int,
        channels: int,
        width: int,
        num_categories: int,
        spectral: bool = False,
        projection: bool = False,
        noise_layers: str = "input",
    ) -> None:
        super().__init__()
        self.frames = frames
        self.noise_every_layer = noise_layers == "all"
        self.num_categories = num_categories
        layers: list[nn.Module] = []
        c, t = channels, frames
        for k in range(_levels(frame_size)):  # S -> 4x4
            c_out, kt = width * min(8, 2**k), min(4, t)
            norm = k > 0 and not spectral
            conv = nn.Conv3d(c, c_out, (kt, 4, 4), (1, 2, 2), (0, 1, 1), bias=not norm)
            layers += [conv] + ([nn.BatchNorm3d(c_out)] if norm else [])
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            c, t = c_out, t - kt + 1
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Conv3d(c, 1 + num_categories, (t, 4, 4))  # (B, 1 + K, 1, 1, 1)
        self.projection = Projection(num_categories, c) if projection else None
        self.apply(init_weights)
        if spectral:
            spectral_normalise(self)

    def forward(
        self,
        clips: Tensor,
        noise: float | InstanceNoise = 0.0,
        category: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """clips (B, T', C, S, S) in [-1, 1] (and their categories (B,) when conditional) ->
        (the clip logits (B, 1, 1, 1), category logits (B, K) or None)."""
        if clips.dim() != 5 or clips.shape[1] != self.frames:
            raise ValueError(
                f"a clip-level video discriminator built for {self.frames} frames got clips "
                f"{tuple(clips.shape)}"
            )
        noise = _noise_of(noise)
        x = clips.transpose(1, 2)  # (B, C, T', S, S)
        h = _trunk_forward(self.trunk, x, noise, self.noise_every_layer)  # (B, c, t, 4, 4)
        out = self.head(h).flatten(1)  # (B, 1 + K)
        logits = out[:, :1, None, None]  # (B, 1, 1, 1): one patch, the whole clip
        logits = _project(logits, h.mean(dim=2, keepdim=True), self.projection, category)
        return logits, (out[:, 1:] if self.num_categories else None)


# ---------------------------------------------------------------------------------------------
# Losses, sampling for the discriminators, and the training task


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """-log D(real) - log(1 - D(fake)), D = σ(logit), averaged over samples and patches."""
    return F.softplus(-real_logits).float().mean() + F.softplus(fake_logits).float().mean()


def generator_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss: -log D(fake)."""
    return F.softplus(-fake_logits).float().mean()


def frame_owners(count: int, batch: int, device: torch.device | None = None) -> Tensor:
    """Which video each of sample_frames' `count` frames comes from: (count,) = 0, 1, .., B-1,
    0, 1, ... (the batch, cycled)."""
    return torch.arange(count, device=device) % batch


def _picks(high: int, owners: Sequence[int], generators: Sequence[torch.Generator]) -> Tensor:
    """One integer in [0, high) per row (CPU, long): the rows of video o (owners[r] = o), in
    row order, drawn together from generators[o]."""
    groups, order = _groups(owners)
    draws = [torch.randint(high, (k,), generator=generators[o]) for o, k in groups]
    return torch.cat(draws)[order]


def _check_generators(generators: Sequence[torch.Generator], batch: int) -> None:
    if len(generators) != batch:
        raise ValueError(f"{len(generators)} generators for a batch of {batch} videos")


def sample_frames(
    videos: Tensor, count: int, generators: Sequence[torch.Generator] | None = None
) -> Tensor:
    """D_I's input: `count` frames (count, C, H, W), one random frame from each video
    (cycling through the batch when count > B: frame_owners). With `generators` (one per
    video, CPU), frame r's time is drawn from its video's generator; else from the global RNG."""
    batch, steps = videos.shape[:2]
    which = frame_owners(count, batch, videos.device)
    if generators is None:
        when = torch.randint(steps, (count,), device=videos.device)
    else:
        _check_generators(generators, batch)
        when = _picks(steps, frame_owners(count, batch).tolist(), generators).to(videos.device)
    return videos[which, when]


def sample_clips(
    videos: Tensor, frames: int, generators: Sequence[torch.Generator] | None = None
) -> Tensor:
    """D_V's input: from each video a run of `frames` consecutive frames at a random start:
    (B, frames, C, H, W). With `generators` (one per video, CPU), video b's start is drawn
    from generators[b]; else from the global RNG."""
    batch, steps = videos.shape[:2]
    if frames >= steps:
        return videos
    if generators is None:
        start = torch.randint(steps - frames + 1, (batch, 1), device=videos.device)
    else:
        _check_generators(generators, batch)
        start = _picks(steps - frames + 1, range(batch), generators)[:, None].to(videos.device)
    index = start + torch.arange(frames, device=videos.device)  # (B, frames)
    return videos[torch.arange(batch, device=videos.device)[:, None], index]


# ---------------------------------------------------------------------------------------------
# Data-parallel BatchNorm: the statistics of the global batch


class _SumOverRanks(torch.autograd.Function):
    """Σ over the ranks of a tensor, differentiable: the gradient of each rank's input is the
    sum over the ranks of the gradients of the output (every rank's loss depends on it)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # noqa: ANN401
        x = x.clone()
        torch.distributed.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # noqa: ANN401
        grad = grad.clone()
        torch.distributed.all_reduce(grad)
        return grad


def _data_parallel() -> bool:
    """Whether this process is one of several ranks of an initialised process group."""
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the global batch of a data-parallel step: in training, with W > 1 ranks,

        μ = Σ_ranks Σ x / N,   σ² = Σ_ranks Σ (x - μ)² / N,   N = Σ_ranks count
        y = γ (x - μ) / sqrt(σ² + eps) + β

    per channel (two all-reduces, differentiable: `_SumOverRanks`), and the running statistics
    follow μ and the unbiased σ² · N / (N - 1) with BatchNorm's momentum. So the ranks compute
    what one process computes on the concatenated batch (torch.nn.SyncBatchNorm does the same
    on GPUs only; this one runs on gloo and CPU too). Otherwise (eval, one process) it is
    BatchNorm. Same parameters and buffers as the BatchNorm it replaces (`global_batch_norm`), so
    state_dicts and checkpoints do not change.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input (N, C, ...), got {input.dim()}-D")

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and _data_parallel()):
            return super().forward(input)
        self._check_input_dim(input)
        c, dims = input.shape[1], [0, *range(2, input.dim())]
        shape = [1, c] + [1] * (input.dim() - 2)
        x = input.float()
        count = torch.tensor([input.numel() / c], dtype=torch.float32, device=x.device)
        sums = _SumOverRanks.apply(torch.cat([x.sum(dims), count]))
        n = sums[c]
        mean = sums[:c] / n
        centred = x - mean.view(shape)
        var = _SumOverRanks.apply(centred.square().sum(dims)) / n
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = self.momentum
                if momentum is None:  # a cumulative average, as BatchNorm does
                    momentum = 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean, momentum)
                self.running_var.lerp_(var * n / (n - 1).clamp_min(1), momentum)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(input.dtype)


def global_batch_norm(module: nn.Module) -> nn.Module:
    """Every BatchNorm inside `module` replaced, in place, by a GlobalBatchNorm that shares its
    parameters and buffers (its state_dict keys are unchanged); returns `module`."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(
            child, GlobalBatchNorm
        ):
            new = GlobalBatchNorm(
                child.num_features,
                child.eps,
                child.momentum,
                child.affine,
                child.track_running_stats,
                device=child.weight.device if child.affine else None,
            )
            if child.affine:
                new.weight, new.bias = child.weight, child.bias
            if child.track_running_stats:
                new.running_mean, new.running_var = child.running_mean, child.running_var
                new.num_batches_tracked = child.num_batches_tracked
            new.train(child.training)
            setattr(module, name, new)
        else:
            global_batch_norm(child)
    return module


@contextlib.contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Parameters of `modules` do not require grad inside the block (restored after)."""
    params = [p for m in modules for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


class MoCoGANTask(TrainingTask):
    """MoCoGAN's training task: three Adam optimisers ("image_disc", "video_disc",
    "generator") and one step = a D_I update, a D_V update, then a G update, all on one batch
    of generated videos (the discriminators see it detached).

    Batches: a Tensor (B, T, C, H, W) in [0, 1] (T >= length; the first `length` frames are
    used), or a dict {"frames": that Tensor, "label": (B,) long category per video}. Labels are
    required when num_categories > 0 and category_weight > 0 (conditional training on labelled
    data: the trainer's loader then yields each video's "label" from the store).
    Unconditional training and InfoGAN categories (category_weight = 0) need no labels.

    The G update runs the discriminators without their DDP wrappers and with their weights
    frozen: the generator's gradient flows through them, theirs is neither computed nor
    all-reduced.

    Randomness: every draw of a step (codes, D inputs, instance noise) is made per video of
    the global batch from `video_rng(video_seed(seed, step), g)`; the trainer says which rows
    of the global batch this process holds (`distribute`). Without that call: one process.
    """

    def __init__(self, **options: Any) -> None:
        self.cfg = family_config(MoCoGANConfig, "mocogan", options)
        cfg = self.cfg
        self.clip_length = cfg.length
        self.needs_labels = cfg.needs_labels
        self.num_categories = cfg.num_categories
        generator = Generator(cfg)
        video_disc: nn.Module
        if cfg.video_discriminator == "clip":
            video_disc = ClipVideoDiscriminator(
                cfg.frame_size,
                cfg.clip_frames,
                cfg.channels,
                cfg.disc_channels,
                cfg.num_categories,
                cfg.spectral_norm,
                cfg.projection,
                cfg.noise_layers,
            )
        else:
            video_disc = VideoDiscriminator(
                cfg.frame_size,
                cfg.channels,
                cfg.disc_channels,
                cfg.num_categories,
                cfg.spectral_norm,
                cfg.projection,
                cfg.noise_layers,
            )
        self.networks = nn.ModuleDict(
            {
                "generator": generator,
                "image_disc": ImageDiscriminator(
                    cfg.frame_size,
                    cfg.channels,
                    cfg.disc_channels,
                    cfg.spectral_norm,
                    cfg.num_categories if cfg.projection else 0,
                    cfg.noise_layers,
                ),
                "video_disc": video_disc,
            }
        )
        if cfg.ema:
            # Beyond the paper (Yazıcı et al., 2019): samples come from a moving average of G's
            # weights, which smooths the oscillation of adversarial training. No optimiser and
            # no gradient: the trainer neither steps nor all-reduces it; checkpoints keep it.
            average = copy.deepcopy(generator).requires_grad_(False)
            self.networks["generator_ema"] = average
        self.inference_networks = ("generator_ema",) if cfg.ema else ("generator",)

    def distribute(self, rank: int, world: int, seed: int) -> None:
        """This process holds rows rank·n .. (rank+1)·n - 1 of every global batch of a run
        seeded `seed` (n = the batch it is given): its draws are those of those videos. With
        W > 1, every BatchNorm becomes a GlobalBatchNorm (statistics of the global batch)."""
        super().distribute(rank, world, seed)
        if world > 1:
            for net in self.networks.values():
                global_batch_norm(net)

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        betas, decay = (self.cfg.beta1, self.cfg.beta2), self.cfg.weight_decay
        return {
            name: torch.optim.Adam(
                self.networks[name].parameters(), lr=self.cfg.lr, betas=betas, weight_decay=decay
            )
            for name in ("generator", "image_disc", "video_disc")
        }

    def noise_sigma(self, step: int) -> float:
        """Instance noise σ at `step`: instance_noise, falling linearly to 0 over
        noise_anneal_steps (constant when that is 0)."""
        cfg = self.cfg
        if cfg.noise_anneal_steps == 0:
            return cfg.instance_noise
        return cfg.instance_noise * max(0.0, 1.0 - step / cfg.noise_anneal_steps)

    def step_generators(
        self, step: int, n: int, device: torch.device
    ) -> tuple[list[torch.Generator], list[torch.Generator]]:
        """The random sources of this process's n videos at `step`: video i is video
        g = rank·n + i of the global batch, and draws from video_rng(video_seed(seed, step), g)
        (CPU): first the seed of its instance-noise generator on `device` (returned second),
        then its codes and its discriminator inputs (in training_step)."""
        run = video_seed(self.seed, step)
        cpu = [video_rng(run, self.rank * n + i) for i in range(n)]
        noise = []
        for rng in cpu:
            seed = int(torch.randint(2**62, (1,), generator=rng))
            noise.append(torch.Generator(device=device).manual_seed(seed))
        return cpu, noise

    def image_count(self, n: int) -> int:
        """Frames shown to D_I by this process when it holds n videos of the global batch:
        image_batch / W (image_batch must then be a multiple of the global batch, so each
        video gives the same number of frames), or n when image_batch is 0."""
        cfg = self.cfg
        if not cfg.image_batch:
            return n
        if self.world == 1:
            return cfg.image_batch
        if cfg.image_batch % (n * self.world):
            raise ValueError(
                f"model.image_batch={cfg.image_batch} with {self.world} workers must be a "
                f"multiple of the global batch ({n * self.world} videos), so every video gives "
                "D_I the same number of frames whichever worker holds it (or 0 = batch size)"
            )
        return cfg.image_batch // self.world

    def _unpack(self, batch: Tensor | dict[str, Tensor]) -> tuple[Tensor, Tensor | None]:
        cfg = self.cfg
        if isinstance(batch, dict):
            if "frames" not in batch:
                raise ValueError("a dict batch needs 'frames' (B, T, C, H, W) and 'label' (B,)")
            frames, labels = batch["frames"], batch.get("label")
        else:
            frames, labels = batch, None
        expected = (cfg.channels, cfg.frame_size, cfg.frame_size)
        if frames.dim() != 5 or tuple(frames.shape[2:]) != expected:
            raise ValueError(
                f"expected frames (B, T, {', '.join(map(str, expected))}) for model.channels="
                f"{cfg.channels}, model.frame_size={cfg.frame_size}; got {tuple(frames.shape)}"
            )
        if frames.shape[1] < cfg.length:
            raise ValueError(f"clip of {frames.shape[1]} frames, need length = {cfg.length}")
        if not cfg.needs_labels:
            return frames[:, : cfg.length], None
        if labels is None:
            raise ValueError(
                f"model.num_categories={cfg.num_categories} with category_weight > 0 trains on "
                "labelled videos: pass the batch as {'frames': (B, T, C, H, W), 'label': (B,) "
                "long} (or set model.num_categories=0, or model.category_weight=0 with "
                "model.infogan > 0 for unsupervised categories)"
            )
        labels = torch.as_tensor(labels, device=frames.device).long().reshape(-1)
        if labels.numel() != frames.shape[0]:
            raise ValueError(f"{labels.numel()} labels for a batch of {frames.shape[0]} videos")
        low, high = torch.aminmax(labels)
        if low < 0 or high >= cfg.num_categories:
            raise ValueError(
                f"labels must be in [0, {cfg.num_categories - 1}] for model.num_categories="
                f"{cfg.num_categories}; got [{int(low)}, {int(high)}]"
            )
        return frames[:, : cfg.length], labels

    def training_step(
        self, batch: Tensor | dict[str, Tensor], step: int, update: UpdateFn
    ) -> dict[str, float]:
        """One D_I, one D_V and one G update. Returns "loss" (G's total loss), "d_image",
        "d_video" (the discriminators' GAN losses), "g_image", "g_video" (G's GAN terms),
        "instance_noise" (σ), and with categories "category_real" (CE of D_V's classifier on
        real clips, labelled data) and "category_fake" (CE on generated clips)."""
        cfg = self.cfg
        frames, labels = self._unpack(batch)
        real = frames * 2.0 - 1.0  # [0, 1] -> [-1, 1]
        n = real.shape[0]
        sigma = self.noise_sigma(step)
        image_count = self.image_count(n)
        # Video i's draws, in this order: its noise generator's seed, its codes, its frames
        # for D_I, its clip for D_V (real and generated); then its instance noise, layer by
        # layer, as the discriminators ask for it.
        rngs, noise_rngs = self.step_generators(step, n, real.device)
        codes = self.unwrap("generator").draw_codes_of(rngs, cfg.length, real.device)
        fake = self.networks["generator"](
            codes["content"], codes["motion_noise"], codes.get("category")
        )  # (B, T, C, H, W) in [-1, 1], with G's graph
        # One random frame per video for D_I, a random run of T' frames per video for D_V.
        fake_frames = sample_frames(fake, image_count, rngs)
        fake_clips = sample_clips(fake, cfg.clip_frames, rngs)
        real_frames = sample_frames(real, image_count, rngs)
        real_clips = sample_clips(real, cfg.clip_frames, rngs)
        owners = frame_owners(image_count, n)
        frame_noise = InstanceNoise(sigma, noise_rngs, owners.tolist())
        clip_noise = InstanceNoise(sigma, noise_rngs)
        zero = real.new_zeros((), dtype=torch.float32)
        # A conditional D (projection) sees each input's category: the true label of a real
        # video, the sampled z_A of a generated one.
        y_real = y_fake = y_real_frames = y_fake_frames = None
        if cfg.projection:
            owners = owners.to(real.device)
            y_real, y_fake = labels, codes["category"]
            y_real_frames, y_fake_frames = y_real[owners], y_fake[owners]

        # D_I: real frames -> 1, generated frames -> 0.
        d_image_net = self.networks["image_disc"]
        d_image = discriminator_loss(
            d_image_net(real_frames, frame_noise, y_real_frames),
            d_image_net(fake_frames.detach(), frame_noise, y_fake_frames),
        )
        update(d_image, "image_disc")

        # D_V: real clips -> 1, generated clips -> 0; its classifier learns the true labels
        # (λ_c) and, InfoGAN's Q, the categories the generated clips were made from (λ_i).
        d_video_net = self.networks["video_disc"]
        real_logits, real_categories = d_video_net(real_clips, clip_noise, y_real)
        fake_logits, fake_categories = d_video_net(fake_clips.detach(), clip_noise, y_fake)
        d_video = discriminator_loss(real_logits, fake_logits)
        category_real = zero
        d_video_total = d_video
        if labels is not None:
            category_real = F.cross_entropy(real_categories.float(), labels)
            d_video_total = d_video_total + cfg.category_weight * category_real
        if cfg.infogan > 0:
            info = F.cross_entropy(fake_categories.float(), codes["category"])
            d_video_total = d_video_total + cfg.infogan * info
        update(d_video_total, "video_disc")

        # G: make both discriminators say "real", and D_V's classifier say the sampled category.
        d_image_g, d_video_g = self.unwrap("image_disc"), self.unwrap("video_disc")
        with frozen(d_image_g, d_video_g):
            g_image = generator_loss(d_image_g(fake_frames, frame_noise, y_fake_frames))
            fake_logits, fake_categories = d_video_g(fake_clips, clip_noise, y_fake)
            g_video = generator_loss(fake_logits)
            g_total = g_image + g_video
            category_fake = zero
            if cfg.num_categories:
                category_fake = F.cross_entropy(fake_categories.float(), codes["category"])
                g_total = g_total + (cfg.category_weight + cfg.infogan) * category_fake
            update(g_total, "generator")
        if cfg.ema:
            self.update_average(step, codes)

        names = ["loss", "d_image", "d_video", "g_image", "g_video"]
        values = [g_total, d_image, d_video, g_image, g_video]
        if cfg.num_categories:
            names.append("category_fake")
            values.append(category_fake)
        if labels is not None:
            names.append("category_real")
            values.append(category_real)
        logs = dict(zip(names, torch.stack(values).detach().float().tolist()))  # one sync
        logs["instance_noise"] = sigma
        return logs

    @torch.no_grad()
    def update_average(self, step: int, codes: dict[str, Tensor] | None = None) -> None:
        """θ_avg <- β_t θ_avg + (1 - β_t) θ_G, β_t = min(β, (1 + t) / (10 + t)): the average
        follows G closely at first, when G changes fastest.

        BatchNorm statistics are θ_avg's own: with the step's `codes` ("content",
        "motion_noise", "category"), θ_avg renders them in training mode, which moves its
        running statistics towards those of its own activations with BatchNorm's momentum,
        as G's own forward pass moves G's. (Copying G's would run the averaged weights with
        statistics of other weights.) Its output is discarded; nothing else changes.
        """
        beta = min(self.cfg.ema, (1.0 + step) / (10.0 + step))
        online, average = self.unwrap("generator"), self.networks["generator_ema"]
        for p_avg, p in zip(average.parameters(), online.parameters()):
            p_avg.lerp_(p, 1.0 - beta)
        if codes is not None:
            mode = average.training
            average.train()
            average(codes["content"], codes["motion_noise"], codes.get("category"))
            average.train(mode)

    def inference_model(self) -> Generator:
        """The generator that makes videos: the moving average of G's weights when model.ema
        is on, else G."""
        return self.networks["generator_ema"] if self.cfg.ema else self.unwrap("generator")

    def config(self) -> dict[str, Any]:
        return asdict(self.cfg)


__all__ = [
    "ClipVideoDiscriminator",
    "Generator",
    "GlobalBatchNorm",
    "ImageDiscriminator",
    "ImageGenerator",
    "InstanceNoise",
    "MoCoGANConfig",
    "MoCoGANTask",
    "Projection",
    "VideoDiscriminator",
    "discriminator_loss",
    "frame_owners",
    "frozen",
    "generator_loss",
    "global_batch_norm",
    "sample_clips",
    "sample_frames",
    "spectral_normalise",
]
