"""A factorised space-time Transformer video predictor, the successor of the LSTM autoencoder.

The composite LSTM (models/lstm_autoencoder.py) squeezes the observed clip into one state; here
every frame stays in memory as a set of patch tokens, and each prediction attends to them.

Tokens. A frame x_t (C, H, W) is cut into N = (H/p)·(W/p) patches of p×p pixels, each mapped
linearly to d numbers, plus a learned position per patch (Dosovitskiy et al. 2021, ViT):

    z⁰_{t,n} = E · patch_n(x_t) + e_n          E (d, C·p²), e_n (d,): n = 1..N on a g×g grid

Blocks. L pre-LN blocks (Vaswani et al. 2017; the LayerNorm before each sub-layer, Xiong et al.
2020), each *divided space-time attention* (Bertasius et al. 2021, TimeSformer: time first,
then space, then the MLP; ViViT's factorised self-attention, Arnab et al. 2021, is the same
split of the N·T tokens into two cheap attentions):

    u_{t,n} = z_{t,n} + TimeAttn_n(LN(z))_t        at location n, over frames s of the window:
              q_t·k_s/√d_h + b_h(t − s),   0 ≤ t − s < W   (causal: never a later frame)
    v_{t,n} = u_{t,n} + SpaceAttn_t(LN(u))_n       within frame t, over its N tokens
    z'_{t,n} = v_{t,n} + MLP(LN(v_{t,n}))          MLP: d -> r·d -> d, GELU

Time positions are relative: a learned bias b_h(Δ) per head and frame offset Δ = 0..W−1 (Shaw
et al. 2018; Raffel et al. 2020), initialised so that head h looks h frames back
(b_h(Δ) = −2·|Δ − h|), as if the last frames were stacked. A prediction therefore depends on how
far back a frame is, never on when the stream started, which is what lets a live session slide
its window.

Prediction. The top tokens of frame t, h_{t,n} = LN(z^L_{t,n}), on their g×g grid, are read out
by a small conv head (3×3 conv, GELU, 1×1 conv: as the ConvLSTM predictor's readout, neighbours
keep a flow field smooth across patch borders) into each patch of the next frame x̂_{t+1}:

    output="pixels":  x̂_{t+1} = σ(patches)  (loss bce) or clamp(patches, 0, 1)     patch space
    output="warp":    x̂_{t+1} = (1 − α) ⊙ warp(x_t, f) + α ⊙ a       the warp head of
                      models/motion.py: a (C, H, W) from the patches; α and f on a
                      (H/field_patch)² grid (r² cells per token, r = p/field_patch), upsampled;
                      f = max_flow·H·tanh(raw) pixels. Its mask and flow rows start at zero, so
                      the untrained model is exactly copy-last-frame.

Training (teacher forcing, parallel over time as in Vaswani et al.): the clip's frames
x_1..x_{L−1} (L = context + horizon) run through the blocks at once under the causal mask, and
the head at every t predicts x_{t+1} from the true x_t, so one step trains L − 1 next-frame
predictions; the loss is ℓ(x̂_{2..L}, x_{2..L}) (l1 | mse | bce per pixel) + gdl_weight·GDL +
ssim_weight·(1 − SSIM) + the pyramid terms (models/motion.py).

Inference is autoregressive: x̂_{T+1} from the observed x_1..x_T, then x̂_{T+1} is fed back as
the next frame, and so on. A *KV cache* makes each fed frame cost one frame: spatial attention
runs only over the new frame's tokens, and temporal attention takes its keys and values of the
earlier frames from a per-block cache (they never change: no later frame influences them).
The cache keeps the last W frames per block, preallocated, in a ring where each new frame
overwrites the oldest (a sliding window, as Longformer, Beltagy et al. 2020, and Mistral's
rolling buffer cache, Jiang et al. 2023); training uses the same band 0 ≤ t − s < W, so a
cached session equals a full recompute over the whole stream, exactly. Through L blocks frame t
still sees L·(W − 1) frames back; nothing older can influence it, which bounds the recompute of
a session without the cache (`kv_cache=false`: it keeps that many frames and reruns them all
for every predicted frame: the cost the cache saves).

Attention made visible (`attention_maps`, also `explain()["attention"]`): attention rollout
(Abnar & Zuidema 2020) through every block, each attention averaged over heads with the
residual as 0.5·A + 0.5·I, from the tokens that produce a predicted frame back to the input
tokens: a distribution over (frame, patch) of the frames it was computed from.

Shapes: B batch, T observed, K predicted frames, (C, H, W) a frame, N = g² tokens of d numbers,
h heads of d_h = d/h, S frames in a window or cache.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.lstm_autoencoder import frame_loss, output_to_frame
from models.motion import (
    compose,
    gradient_difference_loss,
    pixel_loss,
    pyramid_loss,
    ssim_loss,
    upsample_flow,
    zero_rows,
)
from models.task import TrainingTask, UpdateFn, family_config

KV = tuple[Tensor, Tensor]  # one block's temporal keys and values, each (B, N, h, S, d_h)


@dataclass
class TransformerPredictorConfig:
    """Options of the family: the keys of configs/model/transformer_predictor.yaml."""

    name: str = "transformer_predictor"  # registry key (models.FAMILIES)
    frame_size: int = 64  # H = W of a frame, in pixels
    channels: int = 1  # C: 1 for Moving MNIST, 3 for natural video
    context: int = 10  # T: observed frames (evaluate's default context)
    horizon: int = 10  # K: training clips are context + horizon frames long
    patch: int = 4  # p: a token is a p×p patch (g = frame_size / p tokens per side)
    dim: int = 256  # d: numbers per token
    heads: int = 8  # h: attention heads (d divisible by h)
    blocks: int = 8  # L: space-time blocks
    mlp_ratio: int = 4  # r: the MLP's hidden width is r·d
    window: int = 20  # W: frames a token attends to in time, its own included (KV cache size)
    output: str = "warp"  # "warp" (motion-compensated head) | "pixels" (patches drawn anew)
    field_patch: int = 4  # warp: mask and flow per field_patch² pixels (divides patch)
    max_flow: float = 0.125  # warp: largest flow per step, as a fraction of frame_size
    loss: str = "l1"  # per pixel: "l1" | "mse" | "bce"
    scales: int = 3  # the prediction loss also at this many coarser scales (2x pooled each)
    gdl_weight: float = 1.0  # weight of the gradient difference loss on predicted frames
    ssim_weight: float = 0.0  # weight of (1 - SSIM) on predicted frames (frames >= 11 px)
    kv_cache: bool = True  # live sessions cache keys/values (False: recompute, for comparison)
    lr: float = 3e-4  # AdamW learning rate
    weight_decay: float = 0.0  # AdamW decoupled weight decay

    def __post_init__(self) -> None:
        choices = {"output": ("warp", "pixels"), "loss": ("l1", "mse", "bce")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"model.{key}={getattr(self, key)!r}: expected one of {allowed}")
        for key in (
            "frame_size",
            "channels",
            "context",
            "horizon",
            "patch",
            "dim",
            "heads",
            "blocks",
            "mlp_ratio",
            "window",
            "field_patch",
        ):
            if getattr(self, key) < 1:
                raise ValueError(f"model.{key}={getattr(self, key)} must be at least 1")
        if self.frame_size % self.patch != 0:
            raise ValueError(
                f"model.frame_size={self.frame_size} is not a multiple of model.patch={self.patch}"
            )
        if self.output == "warp" and self.patch % self.field_patch != 0:
            raise ValueError(
                f"model.patch={self.patch} is not a multiple of "
                f"model.field_patch={self.field_patch}"
            )
        if self.dim % self.heads != 0:
            raise ValueError(f"model.dim={self.dim} is not a multiple of model.heads={self.heads}")
        if self.max_flow <= 0:
            raise ValueError(f"model.max_flow={self.max_flow} must be > 0")
        if self.scales < 0:
            raise ValueError(f"model.scales={self.scales} must be >= 0")
        if self.gdl_weight < 0 or self.ssim_weight < 0:
            raise ValueError("model.gdl_weight and model.ssim_weight must be >= 0")
        if self.ssim_weight > 0 and self.frame_size < 11:
            raise ValueError(f"model.ssim_weight needs frames of >= 11 px, not {self.frame_size}")


# ---------------------------------------------------------------------------------------------
# Attention and the space-time block


class Attention(nn.Module):
    """Multi-head scaled dot-product attention (Vaswani et al. 2017) over token sequences:

    [q, k, v] = W_qkv x,   out = W_o · concat_h softmax(q_h k_hᵀ / √d_h + bias_h) v_h
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (M, S, d) -> q, k, v each (M, h, S, d_h)."""
        q, k, v = self.qkv(x).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)
        return q, k, v

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None = None, weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """q (M, h, Sq, d_h), k and v (M, h, Sk, d_h), bias (h, Sq, Sk) or None (−inf: masked).
        Returns out (M, Sq, d) and, when `weights`, the attention (M, h, Sq, Sk)."""
        if bias is not None:
            bias = bias.to(q.dtype)
        if weights:
            scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
            attn = (scores if bias is None else scores + bias).softmax(-1)
            out = attn @ v
        else:
            attn, out = None, F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).flatten(2)), attn


# remember(k, v): store a new frame's temporal key and value (B·N, h, 1, d_h) and return what
# it attends over: parts (keys, values (B·N, h, S, d_h), bias (h, S) = b_h(Δ) or −inf)
Remember = Callable[[Tensor, Tensor], list[tuple[Tensor, Tensor, Tensor]]]


class SpaceTimeBlock(nn.Module):
    """One pre-LN block of divided space-time attention: causal windowed attention over time at
    each token location, then attention over space within each frame, then an MLP."""

    def __init__(self, cfg: TransformerPredictorConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.time_norm, self.time = nn.LayerNorm(d), Attention(d, cfg.heads)
        # b_h(Δ), Δ = t − s = 0..W−1: the relative time position. At initialisation head h looks
        # h frames back, b_h(Δ) = −2·|Δ − h|: the block starts out seeing the last frames side
        # by side (what a conv predictor gets by stacking them), the differences motion is in
        offsets = torch.arange(cfg.window, dtype=torch.float32)
        lag = (torch.arange(cfg.heads) % cfg.window).float()
        self.time_bias = nn.Parameter(-2.0 * (offsets[None, :] - lag[:, None]).abs())  # (h, W)
        self.space_norm, self.space = nn.LayerNorm(d), Attention(d, cfg.heads)
        self.mlp_norm = nn.LayerNorm(d)
        self.mlp = nn.Sequential(
            nn.Linear(d, cfg.mlp_ratio * d), nn.GELU(), nn.Linear(cfg.mlp_ratio * d, d)
        )

    def forward(
        self, z: Tensor, bias: Tensor, weights: bool = False
    ) -> tuple[Tensor, KV, tuple[Tensor, Tensor] | None]:
        """All frames at once (teacher forcing, prefill): z (B, T, N, d) and the time bias
        (h, T, T) -> z', the temporal keys and values (B, N, h, T, d_h) for a cache, and with
        `weights` its attention maps averaged over heads (time (B, N, T, T), space
        (B, T, N, N))."""
        b, steps, n, _ = z.shape
        x = self.time_norm(z).transpose(1, 2).flatten(0, 1)  # (B·N, T, d): one sequence per n
        q, k, v = self.time.project(x)
        out, a_time = self.time.attend(q, k, v, bias, weights)
        z = z + out.unflatten(0, (b, n)).transpose(1, 2)
        x = self.space_norm(z).flatten(0, 1)  # (B·T, N, d): one sequence per frame
        out, a_space = self.space.attend(*self.space.project(x), weights=weights)
        z = z + out.unflatten(0, (b, steps))
        z = z + self.mlp(self.mlp_norm(z))
        kv = (k.unflatten(0, (b, n)), v.unflatten(0, (b, n)))
        if not weights:
            return z, kv, None
        assert a_time is not None and a_space is not None
        a_time, a_space = a_time.float().mean(1), a_space.float().mean(1)  # over heads
        return z, kv, (a_time.unflatten(0, (b, n)), a_space.unflatten(0, (b, steps)))

    def step(self, z: Tensor, remember: Remember) -> Tensor:
        """One new frame: z (B, N, d) -> z' (B, N, d). At each location its query attends over
        the parts `remember` returns once it has stored the frame's own key and value: the
        earlier frames and itself (any order: the softmax does not care)."""
        b, n, _ = z.shape
        q, k, v = self.time.project(self.time_norm(z).view(b * n, 1, -1))  # (B·N, h, 1, d_h)
        parts = remember(k, v)
        # softmax_s(q·k_s/√d_h + b_h(Δ_s)) over all parts at once, then Σ_s a_s v_s per part;
        # one query per sequence: elementwise products beat a batch of 1-row matmuls on a CPU
        scale = 1.0 / math.sqrt(q.shape[-1])
        scores = [(q * pk).sum(-1) * scale + pb for pk, _, pb in parts]  # (B·N, h, S) each
        attn = (scores[0] if len(parts) == 1 else torch.cat(scores, -1)).softmax(-1)
        split = attn.split([pk.shape[2] for pk, _, _ in parts], -1)
        out = (split[0].unsqueeze(-1) * parts[0][1]).sum(2)
        for a, (_, pv, _) in zip(split[1:], parts[1:], strict=True):
            out = out + (a.unsqueeze(-1) * pv).sum(2)  # (B·N, h, d_h)
        z = z + self.time.proj(out.view(b, n, -1))
        out, _ = self.space.attend(*self.space.project(self.space_norm(z)))
        z = z + out
        return z + self.mlp(self.mlp_norm(z))


class KVCache:
    """The temporal keys and values of the last W frames of every block, preallocated and
    written in place: a ring where frame τ sits in slot τ mod W, overwriting frame τ − W, the
    one that has just left the window. Appending a frame copies one frame, not the cache.

    keys[i], values[i]: block i's, (B, N, h, W, d_h); `frames`: frames written (τ = 0..frames−1).
    """

    def __init__(self, keys: list[Tensor], values: list[Tensor], frames: int) -> None:
        self.keys, self.values, self.frames = keys, values, frames
        self.window = keys[0].shape[3]

    @classmethod
    def empty(
        cls, shape: tuple[int, int, int, int], blocks: int, window: int, like: Tensor
    ) -> KVCache:
        """An empty cache for keys of shape (B, N, h, d_h), on the device and of the dtype of
        `like`."""
        b, n, h, d = shape
        keys = [like.new_zeros(b, n, h, window, d) for _ in range(blocks)]
        return cls(keys, [like.new_zeros(b, n, h, window, d) for _ in range(blocks)], 0)

    @classmethod
    def of_sequence(cls, kvs: list[KV], window: int) -> KVCache:
        """The cache after frames 0..T−1 from each block's keys and values (B, N, h, T, d_h)."""
        steps = kvs[0][0].shape[3]
        held = min(steps, window)
        slots = torch.arange(steps - held, steps, device=kvs[0][0].device) % window
        b, n, h, _, d = kvs[0][0].shape
        cache = cls.empty((b, n, h, d), len(kvs), window, kvs[0][0])
        for i, (k, v) in enumerate(kvs):
            cache.keys[i][..., slots, :] = k[..., steps - held :, :]
            cache.values[i][..., slots, :] = v[..., steps - held :, :]
        cache.frames = steps
        return cache

    @property
    def held(self) -> int:
        """Frames in the cache: min(frames, W)."""
        return min(self.frames, self.window)

    def offsets(self, now: int, newest: int) -> Tensor:
        """Δ = now − τ of the frame τ in each slot (W,) when the newest frame in the ring is
        `newest`; W (masked) for a slot that holds no frame yet."""
        slot = torch.arange(self.window, device=self.keys[0].device)
        tau = newest - (newest - slot) % self.window
        return torch.where(tau >= 0, now - tau, self.window)

    def write(self, block: int, k: Tensor, v: Tensor, frame: int) -> None:
        """Store block `block`'s key and value (B·N, h, 1, d_h) of frame `frame` in place."""
        b, n, h, _, d = self.keys[block].shape
        self.keys[block][..., frame % self.window, :] = k.view(b, n, h, d)
        self.values[block][..., frame % self.window, :] = v.view(b, n, h, d)

    def rolled(self, frames: int) -> KVCache:
        """A copy renumbered so that its newest frame is frame `frames` − 1 (the same offsets):
        sessions at different frame counts line up slot for slot to merge."""
        shift = (frames - self.frames) % self.window
        keys = [k.roll(shift, dims=3) for k in self.keys]
        return KVCache(keys, [v.roll(shift, dims=3) for v in self.values], frames)

    def rows(self, rows: slice) -> KVCache:
        """A copy of streams `rows` of the batch."""
        keys = [k[rows].clone() for k in self.keys]
        return KVCache(keys, [v[rows].clone() for v in self.values], self.frames)

    @classmethod
    def cat(cls, caches: list[KVCache]) -> KVCache:
        """Caches of equal `held` side by side along the batch."""
        frames = caches[0].held  # renumbered: frames 0..held−1
        lined = [c.rolled(frames) for c in caches]
        keys = [torch.cat(ks) for ks in zip(*(c.keys for c in lined), strict=True)]
        values = [torch.cat(vs) for vs in zip(*(c.values for c in lined), strict=True)]
        return cls(keys, values, frames)


# ---------------------------------------------------------------------------------------------
# The predictor


class SpaceTimeTransformer(nn.Module):
    """Patch tokens -> L space-time blocks -> a head that draws (or warps into) the next frame."""

    def __init__(self, cfg: TransformerPredictorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, p, d = cfg.channels, cfg.patch, cfg.dim
        self.grid = cfg.frame_size // p  # g
        self.warp = cfg.output == "warp"
        self.embed = nn.Linear(c * p * p, d)  # E: one linear map per p×p patch
        self.space_pos = nn.Parameter(torch.zeros(self.grid**2, d))  # e_n
        self.blocks = nn.ModuleList(SpaceTimeBlock(cfg) for _ in range(cfg.blocks))
        self.norm = nn.LayerNorm(d)
        # readout, an MLP per token: C·p² appearance values (pixel-shuffled back into its
        # patch), for the warp head also a mask and a 2-D flow per field_patch² block of the
        # patch (3·r² values, r = p / field_patch)
        self.sub = p // cfg.field_patch if self.warp else 0  # r
        outputs = c * p * p + 3 * self.sub**2
        self.head = nn.Sequential(
            nn.Conv2d(d, d, 3, padding=1), nn.GELU(), nn.Conv2d(d, outputs, 1)
        )
        self.apply(self._init)
        nn.init.trunc_normal_(self.space_pos, std=0.02)
        for block in self.blocks:  # residual branches start small (GPT-2: std / √(2L))
            for proj in (block.time.proj, block.space.proj, block.mlp[-1]):
                nn.init.trunc_normal_(proj.weight, std=0.02 / math.sqrt(2 * cfg.blocks))
        if self.warp:  # mask and flow rows at zero: the head starts as copy-last-frame
            zero_rows(self.head[-1], c * p * p)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    @property
    def receptive_field(self) -> int:
        """Frames back that can influence a prediction, the newest included: L·(W − 1) + 1."""
        return self.cfg.blocks * (self.cfg.window - 1) + 1

    def patches(self, maps: Tensor, size: int) -> Tensor:
        """Maps (M, K, g·s, g·s) -> their s×s patches (M, N, K·s²), token-major."""
        m, k, g = maps.shape[0], maps.shape[1], self.grid
        return maps.view(m, k, g, size, g, size).permute(0, 2, 4, 1, 3, 5).reshape(m, g * g, -1)

    def unpatch(self, values: Tensor, size: int) -> Tensor:
        """The inverse of patches: (M, N, K·s²) -> maps (M, K, g·s, g·s)."""
        m, g = values.shape[0], self.grid
        maps = values.reshape(m, g, g, -1, size, size).permute(0, 3, 1, 4, 2, 5)
        return maps.reshape(m, maps.shape[1], g * size, g * size)

    def tokens(self, frames: Tensor) -> Tensor:
        """z⁰ = E·patches + e: frames (M, C, H, W) -> (M, N, d)."""
        return self.embed(self.patches(frames, self.cfg.patch)) + self.space_pos

    def time_biases(self, delta: Tensor) -> Tensor:
        """b_h(Δ) of every block for frame offsets Δ (any shape), −inf outside 0 ≤ Δ < W:
        (L, h, *delta.shape)."""
        window = self.cfg.window
        table = torch.stack([block.time_bias for block in self.blocks])  # (L, h, W)
        outside = (delta < 0) | (delta >= window)
        return table[:, :, delta.clamp(0, window - 1)].masked_fill(outside, -math.inf)

    # -- the two ways through the blocks: all frames at once, or one new frame on a cache --
    def encode(
        self, frames: Tensor, weights: bool = False
    ) -> tuple[Tensor, list[KV], list[tuple[Tensor, Tensor]]]:
        """frames (B, T, C, H, W) -> top tokens h (B, T, N, d), each block's temporal keys and
        values (B, N, h, T, d_h) (KVCache.of_sequence makes them a cache), and with `weights`
        each block's (time, space) attention (see SpaceTimeBlock.forward)."""
        b, steps = frames.shape[:2]
        z = self.tokens(frames.flatten(0, 1)).unflatten(0, (b, steps))
        t = torch.arange(steps, device=frames.device)
        masks = self.time_biases(t[:, None] - t[None, :])  # (L, h, T, T): causal, windowed
        kvs, maps = [], []
        for block, mask in zip(self.blocks, masks, strict=True):
            z, kv, a = block(z, mask, weights)
            kvs.append(kv)
            if a is not None:
                maps.append(a)
        return self.norm(z), kvs, maps

    def append(self, frame: Tensor, cache: KVCache | None) -> tuple[Tensor, KVCache]:
        """One new frame (B, C, H, W) through the blocks: each stores its key and value in the
        cache, in place (a new cache for None), and attends over the cache. Returns the frame's
        top tokens (B, N, d) and the cache."""
        cfg = self.cfg
        if cache is None:
            shape = (frame.shape[0], self.grid**2, cfg.heads, cfg.dim // cfg.heads)
            cache = KVCache.empty(shape, cfg.blocks, cfg.window, self.space_pos)
        now = cache.frames  # this frame's index
        biases = self.time_biases(cache.offsets(now, newest=now))  # (L, h, W)
        z = self.tokens(frame)
        for i, block in enumerate(self.blocks):
            z = block.step(z, partial(self._into_cache, cache, i, now, biases[i]))
        cache.frames = now + 1
        return self.norm(z), cache

    @staticmethod
    def _into_cache(
        cache: KVCache, i: int, now: int, bias: Tensor, k: Tensor, v: Tensor
    ) -> list[tuple[Tensor, Tensor, Tensor]]:
        """append(): block i's key and value of frame `now` go into the ring; it attends over
        the ring (the slot it overwrote held a frame that has left the window)."""
        cache.write(i, k, v, now)
        return [(cache.keys[i].flatten(0, 1), cache.values[i].flatten(0, 1), bias)]

    @staticmethod
    def _beside_cache(
        cache: KVCache, fed: list[KV], i: int, biases: tuple[Tensor, Tensor], k: Tensor, v: Tensor
    ) -> list[tuple[Tensor, Tensor, Tensor]]:
        """autoregress(): block i's key and value of a fed-back frame join those of the frames fed
        back before it (fed[i], (B·N, h, E, d_h)); it attends over the ring and them."""
        fk, fv = fed[i]
        fed[i] = (torch.cat([fk, k], 2), torch.cat([fv, v], 2)) if fk.numel() else (k, v)
        ring = (cache.keys[i].flatten(0, 1), cache.values[i].flatten(0, 1))
        return [(*ring, biases[0]), (*fed[i], biases[1])]

    # -- the head --
    def maps(self, top: Tensor) -> dict[str, Tensor]:
        """The head's readout of top tokens (M, N, d): "appearance" (M, C, H, W) (logits, or the
        pixel head's raw values), with output="warp" "mask" (M, 1, H, W) before its clamp and
        "flow" (M, 2, H, W) in pixels."""
        cfg, c, p = self.cfg, self.cfg.channels, self.cfg.patch
        grid = top.transpose(1, 2).unflatten(2, (self.grid, self.grid))  # (M, d, g, g)
        raw = self.head(grid).flatten(2).transpose(1, 2)  # (M, N, C·p² + 3·r²)
        out = {"appearance": self.unpatch(raw[..., : c * p * p], p)}  # (M, C, H, W)
        if not self.warp:
            return out
        fields_ = self.unpatch(raw[..., c * p * p :], self.sub)  # (M, 3, H/fp, W/fp)
        # f = max_flow·H · tanh(raw): |f| <= max_flow·H (a flow that can reach anywhere learns
        # to erase moving objects instead of moving them, as the LSTM's warp head notes), f = 0
        # at raw = 0 (copy-last at initialisation), and a raw unit is max_flow·H pixels, so
        # AdamW's steps of ~lr per weight move the flow pixels, not hundredths of one
        bound = cfg.max_flow * cfg.frame_size
        fields_ = torch.cat([fields_[:, :1], bound * torch.tanh(fields_[:, 1:])], 1)
        fields_ = upsample_flow(fields_, cfg.frame_size)
        out.update(mask=fields_[:, :1], flow=fields_[:, 1:])
        return out

    def next_frame(self, top: Tensor, previous: Tensor) -> dict[str, Tensor]:
        """x̂_{t+1} from the top tokens of frame t (M, N, d) and x_t (M, C, H, W) (what the warp
        head moves): {"frames" (M, C, H, W) in [0, 1], "raw" (pixels: logits or values), with
        output="warp" "flow" (M, 2, H, W) px and "mask" (M, 1, H, W) (α, clamped)}."""
        m = self.maps(top)
        if not self.warp:
            return {
                "frames": output_to_frame(m["appearance"], self.cfg.loss),
                "raw": m["appearance"],
            }
        previous = previous.to(m["appearance"].dtype)
        frame, alpha = compose(previous, m["appearance"], m["mask"], m["flow"])
        return {"frames": frame, "flow": m["flow"], "mask": alpha}

    def forward(self, clip: Tensor) -> dict[str, Tensor]:
        """Teacher forcing: clip (B, L, C, H, W) -> the next-frame predictions of x_2..x_L, each
        from the true frames before it: "frames" (B, L−1, C, H, W) in [0, 1], "raw" (pixels)
        or "flow" (B, L−1, 2, H, W) and "mask" (B, L−1, 1, H, W) (warp)."""
        inputs = clip[:, :-1]
        top, _, _ = self.encode(inputs)  # (B, L−1, N, d)
        out = self.next_frame(top.flatten(0, 1), inputs.flatten(0, 1))
        return {k: v.unflatten(0, inputs.shape[:2]) for k, v in out.items()}

    # -- inference --
    def autoregress(
        self, top: Tensor, cache: KVCache, last: Tensor, horizon: int
    ) -> dict[str, Tensor]:
        """The next `horizon` frames from the top tokens of the last frame (B, N, d), the cache
        and that frame (B, C, H, W): each prediction is fed back through the blocks, its keys
        and values kept beside the cache (which is left as it was). Returns {"frames"
        (B, K, C, H, W), and for the warp head "flow", "mask"}."""
        newest = cache.frames - 1  # the newest frame in the cache
        fed: list[KV] = [(last.new_zeros(0), last.new_zeros(0))] * len(self.blocks)
        # the biases of every step at once: fed-back frame k is frame newest + 1 + k; it sees
        # the cached frames 1 + k further back than the newest does, the fed ones k .. 0 back
        ahead = torch.arange(1, horizon, device=last.device)  # 1 + k
        cached = self.time_biases(cache.offsets(newest, newest) + ahead[:, None])  # (L, h, K−1, W)
        behind = self.time_biases(torch.arange(horizon - 2, -1, -1, device=last.device))
        outs = []
        for k in range(horizon):
            out = self.next_frame(top, last)
            out.pop("raw", None)
            outs.append(out)
            last = out["frames"]
            if k + 1 == horizon:
                break
            z = self.tokens(last)
            for i, block in enumerate(self.blocks):
                biases = (cached[i, :, k], behind[i, :, horizon - 2 - k :])  # (h, W), (h, k+1)
                remember = partial(self._beside_cache, cache, fed, i, biases)
                z = block.step(z, remember)
            top = self.norm(z)
        return {key: torch.stack([o[key] for o in outs], 1) for key in outs[0]}

    def recompute(self, frames: Tensor, horizon: int) -> dict[str, Tensor]:
        """autoregress() without a cache: every prediction reruns the blocks over the last
        receptive_field frames (the same numbers, the cost growing with L·W)."""
        outs, seq = [], frames
        for _ in range(horizon):
            seq = seq[:, -self.receptive_field :]
            top, _, _ = self.encode(seq)
            out = self.next_frame(top[:, -1], seq[:, -1])
            out.pop("raw", None)
            outs.append(out)
            seq = torch.cat([seq, out["frames"][:, None].to(seq.dtype)], 1)
        return {key: torch.stack([o[key] for o in outs], 1) for key in outs[0]}

    def _check(self, observed: Tensor, horizon: int) -> None:
        cfg = self.cfg
        want = (cfg.channels, cfg.frame_size, cfg.frame_size)
        if observed.dim() != 5 or tuple(observed.shape[2:]) != want or observed.shape[1] < 1:
            raise ValueError(f"observed {tuple(observed.shape)}: expected (B, T >= 1, *{want})")
        if horizon < 1:
            raise ValueError(f"horizon={horizon} must be at least 1")

    @torch.no_grad()
    def predict(self, observed: Tensor, horizon: int) -> Tensor:
        """Future frames (B, horizon, C, H, W) in [0, 1] from observed (B, T, C, H, W): the
        observed frames in one pass, then one cached step per predicted frame."""
        return self._explain(observed, horizon)["frames"]

    def _explain(self, observed: Tensor, horizon: int) -> dict[str, Tensor]:
        self._check(observed, horizon)
        top, kvs, _ = self.encode(observed)
        cache = KVCache.of_sequence(kvs, self.cfg.window)
        out = self.autoregress(top[:, -1], cache, observed[:, -1], horizon)
        return {k: v.to(observed.dtype) for k, v in out.items()}  # bf16 under autocast -> input's

    @torch.no_grad()
    def explain(self, observed: Tensor, horizon: int) -> dict[str, Tensor]:
        """predict(), with how: {"frames" (B, K, C, H, W); with output="warp" "flow"
        (B, K, 2, H, W) px and "mask" (B, K, 1, H, W); and "attention" (B, K, T+K−1, g, g),
        see attention_maps}."""
        out = self._explain(observed, horizon)
        out["attention"] = self._rollout_attention(observed, out["frames"])
        return out

    @torch.no_grad()
    def attention_maps(self, observed: Tensor, horizon: int) -> Tensor:
        """Where each predicted frame looked: (B, K, T+K−1, g, g), g = frame_size / patch.

        [b, k, s, i, j] is the share of predicted frame k+1 (0-based k) that attention rollout
        (Abnar & Zuidema 2020) traces to the patch (i, j) of input frame s: frames 0..T−1 are
        the observed ones, T.. the model's own predictions fed back. Each [b, k] sums to 1; the
        frames after the one that produced prediction k+1 (s > T−1+k) get exactly 0 (causality).
        """
        frames = self._explain(observed, horizon)["frames"]
        return self._rollout_attention(observed, frames)

    def _rollout_attention(self, observed: Tensor, predicted: Tensor) -> Tensor:
        seq = torch.cat([observed, predicted[:, :-1].to(observed.dtype)], 1)  # (B, S, C, H, W)
        _, _, maps = self.encode(seq, weights=True)
        b, s = seq.shape[:2]
        t, k, n = observed.shape[1], predicted.shape[1], self.grid**2
        # R[b, k, s, n]: relevance of input token (s, n) to prediction k, starting uniform over
        # the tokens of the frame T−1+k that produced it; rows stay distributions because
        # every Ã = 0.5·A + 0.5·I is row-stochastic
        rel = seq.new_zeros(b, k, s, n, dtype=torch.float32)
        rel[:, torch.arange(k), t - 1 + torch.arange(k)] = 1.0 / n
        eye_n = torch.eye(n, device=seq.device)
        eye_s = torch.eye(s, device=seq.device)
        for a_time, a_space in reversed(maps):  # block output = Ã_space Ã_time (block input)
            space = 0.5 * a_space + 0.5 * eye_n  # (B, S, N, N): [s, query, key]
            time = 0.5 * a_time + 0.5 * eye_s  # (B, N, S, S): [n, query, key]
            rel = torch.einsum("bksn,bsnm->bksm", rel, space)
            rel = torch.einsum("bksn,bnsr->bkrn", rel, time)
        return rel.unflatten(-1, (self.grid, self.grid))

    def stream(self, batch_size: int = 1) -> TransformerStream:
        """A live session: see TransformerStream."""
        return TransformerStream(self, batch_size)


class TransformerStream:
    """A live session: `step(frame)` runs the new frame through the blocks on the KV cache (one
    frame's cost) and keeps its top tokens; `predict(h)` rolls out from them, keeping the keys
    and values of its own predictions beside the cache, so the session's state is unchanged.
    The cache holds the last W frames per block (the oldest dropped): memory is bounded on an
    endless stream, and after step(x_1) ... step(x_T), predict(h) equals
    SpaceTimeTransformer.predict(x_1..T, h) for any T.

    With model.kv_cache=false the session instead keeps the last L·(W − 1) + 1 frames (all that
    can still influence a prediction) and recomputes them for every predicted frame: the same
    predictions, at a cost that grows with the window.
    """

    def __init__(self, model: SpaceTimeTransformer, batch_size: int = 1) -> None:
        self.model = model
        self.batch_size = batch_size
        self.cached = model.cfg.kv_cache
        self.cache: KVCache | None = None  # kv_cache
        self.top: Tensor | None = None  # top tokens of the last frame (B, N, d), kv_cache
        self.last: Tensor | None = None  # the last frame (B, C, H, W)
        self.frames: deque[Tensor] = deque(maxlen=model.receptive_field)  # no kv_cache
        self.frames_seen = 0
        self.parts = [(batch_size, 0)]  # (batch size, frames seen) of the streams merged here

    @torch.no_grad()
    def step(self, frame: Tensor) -> None:
        """Feed one frame (B, C, H, W) in [0, 1]."""
        if frame.shape[0] != self.batch_size:
            raise ValueError(f"frame batch {frame.shape[0]} != stream batch {self.batch_size}")
        if self.cached:
            self.top, self.cache = self.model.append(frame, self.cache)
        else:
            self.frames.append(frame)
        self.last = frame
        self.frames_seen += 1

    @torch.no_grad()
    def predict(self, horizon: int) -> Tensor:
        """The next `horizon` frames (B, horizon, C, H, W) in [0, 1]."""
        if self.last is None:
            raise RuntimeError("TransformerStream.predict() before any step(frame)")
        if horizon < 1:
            raise ValueError(f"horizon={horizon} must be at least 1")
        if self.cached:
            assert self.top is not None and self.cache is not None
            out = self.model.autoregress(self.top, self.cache, self.last, horizon)
        else:
            out = self.model.recompute(torch.stack(list(self.frames), 1), horizon)
        return out["frames"].to(self.last.dtype)

    # Cross-session batching (serve): sessions whose caches (or frame buffers) hold the same
    # number of frames merge into one batch (row i is session i), step together, split back.
    def batch_key(self) -> tuple[bool, int]:
        """Streams with equal keys can merge: the same mode and the same frames held."""
        if self.cached:
            return (True, 0 if self.cache is None else self.cache.held)
        return (False, len(self.frames))

    @classmethod
    def merge(cls, streams: list[TransformerStream]) -> TransformerStream:
        """One stream whose batch is the streams' batches side by side (equal batch_key)."""
        merged = cls(streams[0].model, sum(s.batch_size for s in streams))
        if streams[0].last is not None:
            merged.last = torch.cat([s.last for s in streams if s.last is not None])
            if merged.cached:
                merged.top = torch.cat([s.top for s in streams if s.top is not None])
                merged.cache = KVCache.cat([s.cache for s in streams if s.cache is not None])
            for frames in zip(*(s.frames for s in streams), strict=True):
                merged.frames.append(torch.cat(frames))
        merged.parts = [(s.batch_size, s.frames_seen) for s in streams]
        return merged

    def split(self) -> list[TransformerStream]:
        """The inverse of merge (copies, so the merged batch can be freed)."""
        out, start = [], 0
        for n, seen in self.parts:
            rows = slice(start, start + n)
            s = TransformerStream(self.model, n)
            if self.last is not None:
                s.last = self.last[rows].clone()
                if self.top is not None and self.cache is not None:
                    s.top = self.top[rows].clone()
                    s.cache = self.cache.rows(rows)
                s.frames.extend(f[rows].clone() for f in self.frames)
            s.frames_seen = seen + self.frames_seen  # its own count, plus steps taken merged
            out.append(s)
            start += n
        return out


# ---------------------------------------------------------------------------------------------
# The training task


class TransformerPredictorTask(TrainingTask):
    """One AdamW optimiser, one loss over the L − 1 teacher-forced next-frame predictions:

        L = ℓ(x̂_{2..L}, x_{2..L}) + pyramid terms + gdl_weight·GDL + ssim_weight·(1 − SSIM)

    with ℓ the mean per-pixel loss (for the pixel head with loss=bce, on its logits).
    """

    def __init__(self, **options: Any) -> None:
        self.cfg = family_config(TransformerPredictorConfig, "transformer_predictor", options)
        self.clip_length = self.cfg.context + self.cfg.horizon
        self.networks = nn.ModuleDict({"model": SpaceTimeTransformer(self.cfg)})

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        params = list(self.networks["model"].parameters())
        fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
        adamw = torch.optim.AdamW(
            params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay, fused=fused or None
        )
        return {"model": adamw}

    def losses(self, outputs: dict[str, Tensor], target: Tensor) -> dict[str, Tensor]:
        """Mean per-pixel loss terms of predictions against target (B, L−1, C, H, W), and the
        weighted total ("loss")."""
        cfg, frames = self.cfg, outputs["frames"]
        terms: dict[str, Tensor] = {}
        if "raw" in outputs:  # the pixel head: bce on its logits
            terms["prediction"] = frame_loss(outputs["raw"], target, cfg.loss)
        else:
            terms["prediction"] = pixel_loss(frames, target, cfg.loss)
        total = terms["prediction"]
        if cfg.scales > 0:
            terms["pyramid"] = pyramid_loss(frames, target, cfg.loss, cfg.scales)
            total = total + terms["pyramid"]
        if cfg.gdl_weight > 0:
            terms["gdl"] = gradient_difference_loss(frames, target)
            total = total + cfg.gdl_weight * terms["gdl"]
        if cfg.ssim_weight > 0:
            terms["ssim"] = ssim_loss(frames, target)
            total = total + cfg.ssim_weight * terms["ssim"]
        terms["loss"] = total
        return terms

    def training_step(self, batch: Tensor, step: int, update: UpdateFn) -> dict[str, float]:
        """batch (B, >= context + horizon, C, H, W) in [0, 1]. Returns "loss" (the optimised
        mean per-pixel objective), "prediction_loss" per frame (summed over a frame's pixels)
        and the extra terms as optimised."""
        if batch.shape[1] < self.clip_length:
            raise ValueError(
                f"clip of {batch.shape[1]} frames, need context + horizon = {self.clip_length}"
            )
        clip = batch[:, : self.clip_length]
        outputs = self.networks["model"](clip)
        terms = self.losses(outputs, clip[:, 1:])
        update(terms["loss"], "model")
        names = ["loss", "prediction_loss"]
        values = [terms["loss"], terms["prediction"] * batch[0, 0].numel()]  # per frame
        for extra in ("pyramid", "gdl", "ssim"):
            if extra in terms:
                names.append(f"{extra}_loss")
                values.append(terms[extra])
        return dict(zip(names, torch.stack(values).detach().float().tolist()))  # one sync

    def inference_model(self) -> SpaceTimeTransformer:
        return self.unwrap("model")

    def config(self) -> dict[str, Any]:
        return asdict(self.cfg)


__all__ = [
    "Attention",
    "KVCache",
    "SpaceTimeBlock",
    "SpaceTimeTransformer",
    "TransformerPredictorConfig",
    "TransformerPredictorTask",
    "TransformerStream",
]
