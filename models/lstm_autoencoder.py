"""Composite LSTM video autoencoder (Srivastava, Mansimov & Salakhutdinov, ICML 2015).

An encoder LSTM reads the observed frames x_1..x_T. Its final state (h_T, c_T), copied, starts
two decoders:

    reconstruction decoder:  x_T, x_{T-1}, ..., x_1        (the input in reverse order)
    future predictor:        x_{T+1}, ..., x_{T+K}

Reversing the reconstruction target puts the frame the encoder saw last first, so the decoder
gets off the ground on short-range correlations. The reconstruction keeps the representation
from discarding the past; the predictor keeps it from memorising frames without dynamics.

Each decoder is *conditional* (its input at step k is the previous frame of its target: the
true one while training, its own output at inference; scheduled sampling mixes the two) or
*unconditional* (its input is zero, so it can only unroll the state it was given), each on its
own: `conditional` is false (neither), true (both), "predict" or "reconstruct" (that decoder
only). The paper's best Moving MNIST model (Table 1, "Composite Model with Conditional Future
Predictor") is `conditional="predict"`: an unconditional reconstruction, a conditional future.

The paper's recipe (configs/model/lstm_autoencoder_paper.yaml states each setting and its
source) has options here too: `layers=2` (the Table 1 models have two LSTM layers of 2048
units), `peephole=True` (the official code's LSTM cell has peephole connections, its
`w_diag`), `optimizer="sgd"` with `momentum`, `weight_decay` and `step_clip` (the official
update: momentum SGD on the loss summed over the batch, `reduction="sum"`, every element of the
step clipped) and `init_range` (its uniform initialisation).

Variants beyond the paper:
- `cell="conv"`: ConvLSTM cells (Shi et al., 2015) on patchified frames, for natural video,
  where a fully connected layer over every pixel neither fits nor generalises.
- `attention=True`: decoders attend over every encoder state, not only the last one, the
  remedy for squeezing a whole clip through one state vector.
- `output="warp"`: the future predictor's readout drives a motion-compensated head
  (models/motion.py): each future frame is the previous one warped by a predicted flow,
  blended with new appearance where a predicted mask says so. Untrained, it is exactly
  copy-last-frame. `output="pixels"` is the paper's head (frames drawn from the state).
  `output="cdna"`: the kernel head of models/motion.py instead of the flow (Finn et al. 2016's
  CDNA): `motion_kernels` translation kernels per step for the whole frame, chosen per pixel;
  also exactly copy-last-frame untrained.
- losses against blur: `loss` l1 | mse | bce per pixel, plus `gdl_weight` · the gradient
  difference loss (Mathieu et al., 2016) and `ssim_weight` · (1 − SSIM) on predicted frames.

Shapes: B batch, T observed frames, K predicted frames, (C, H, W) a frame. Inside the
recurrent networks a frame is a *feature*: a flat vector of D = C·H·W numbers (fc) or a patch
grid (C·p², H/p, W/p) (conv); `embed` and `unembed` convert, and the decoders work in feature
space only (the output nonlinearity is elementwise, so it commutes with the conversion).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.motion import (
    compose,
    compose_kernels,
    gradient_difference_loss,
    kernel_bank,
    pixel_loss,
    pyramid_loss,
    rollout,
    rollout_kernels,
    ssim_loss,
    upsample_flow,
    zero_rows,
)
from models.task import TrainingTask, UpdateFn, family_config

LSTMState = tuple[Tensor, Tensor]  # (h, c), each (layers, B, *state features): nn.LSTM's layout
CONDITIONAL = ("predict", "reconstruct")  # model.conditional's strings: the one conditional decoder


@dataclass
class LSTMAutoencoderConfig:
    """Options of the family; the fields are the keys of configs/model/lstm_autoencoder.yaml."""

    name: str = "lstm_autoencoder"  # registry key (models.FAMILIES)
    frame_size: int = 64  # H = W of a frame, in pixels
    channels: int = 1  # C: 1 for Moving MNIST, 3 for natural video
    context: int = 10  # T: observed frames the encoder reads
    horizon: int = 10  # K: future frames the predictor is trained on
    hidden: int = 2048  # fc: units per LSTM layer (the paper: 2048)
    layers: int = 1  # stacked LSTM layers, encoder and each decoder (the paper's Table 1: 2)
    decoders: str = "composite"  # "composite" | "reconstruct" | "predict"
    # decoders fed the previous frame: False (neither) | True (both) | "predict" | "reconstruct"
    conditional: bool | str = False
    peephole: bool = False  # fc: LSTM cells with peephole connections (the official code's)
    scheduled_sampling: float = 0.0  # max prob. of feeding own output in training (0: never)
    sampling_ramp_steps: int = 10000  # steps over which that probability rises linearly from 0
    cell: str = "fc"  # "fc": LSTM on flattened frames (the paper); "conv": ConvLSTM on patches
    patch: int = 4  # conv: space-to-depth factor; the ConvLSTM runs on a frame_size/patch grid
    conv_channels: int = 64  # conv: hidden channels per ConvLSTM layer and in the output head
    kernel: int = 5  # conv: ConvLSTM kernel size
    attention: bool = False  # decoders attend over every encoder state, not only the last
    loss: str = "bce"  # per-pixel loss: "bce" (sigmoid outputs), "mse" or "l1" (regressed)
    output: str = (
        "pixels"  # predictor head: "pixels" (the paper) | "warp" (flow) | "cdna" (kernels)
    )
    max_flow: float = 0.125  # warp: largest flow per step, as a fraction of frame_size
    motion_kernels: int = 8  # cdna: translation kernels per step (objects moving differently)
    motion_kernel_size: int = 9  # cdna: k, odd; the farthest move per step is k // 2 pixels
    scales: int = 0  # the prediction loss also at this many coarser scales (2x pooled each)
    horizon_ramp_steps: int = 0  # curriculum: predicted frames trained on grow 1 -> horizon
    gdl_weight: float = 0.0  # weight of the gradient difference loss on predicted frames
    ssim_weight: float = 0.0  # weight of (1 - SSIM) on predicted frames (frames >= 11 px)
    lr: float = 1e-3  # learning rate
    weight_decay: float = 0.0  # L2 weight decay (sgd: of the weights, not of the biases)
    reconstruct_weight: float = 1.0  # weight of the reconstruction loss next to the prediction loss
    optimizer: str = "adam"  # "adam" | "sgd": momentum SGD with a clipped step (official code)
    momentum: float = 0.9  # sgd: momentum of the velocity
    step_clip: float = 0.0  # sgd: each element of the step clipped to ±step_clip (0: off)
    reduction: str = "mean"  # loss over pixels, frames and clips: "mean" | "sum" (official)
    init_range: float = 0.0  # > 0: weights uniform in ±init_range, biases 0; 0: PyTorch's init

    def __post_init__(self) -> None:
        choices = {
            "decoders": ("composite", "reconstruct", "predict"),
            "cell": ("fc", "conv"),
            "loss": ("bce", "mse", "l1"),
            "output": ("pixels", "warp", "cdna"),
            "optimizer": ("adam", "sgd"),
            "reduction": ("mean", "sum"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"model.{key}={getattr(self, key)!r}: expected one of {allowed}")
        for key in ("frame_size", "channels", "context", "horizon", "hidden", "layers"):
            if getattr(self, key) < 1:
                raise ValueError(f"model.{key}={getattr(self, key)} must be at least 1")
        if not isinstance(self.conditional, bool) and self.conditional not in CONDITIONAL:
            raise ValueError(
                f"model.conditional={self.conditional!r}: expected false, true, "
                f"{' or '.join(CONDITIONAL)}"
            )
        if self.peephole and self.cell != "fc":
            raise ValueError("model.peephole=true needs model.cell=fc (LSTM cells on frames)")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"model.momentum={self.momentum} must be in [0, 1)")
        for key in ("step_clip", "init_range", "weight_decay"):
            if getattr(self, key) < 0:
                raise ValueError(f"model.{key}={getattr(self, key)} must be >= 0")
        if (self.cell == "conv" or self.output != "pixels") and self.frame_size % self.patch != 0:
            raise ValueError(
                f"model.frame_size={self.frame_size} is not a multiple of model.patch={self.patch}"
            )
        if self.horizon_ramp_steps < 0:
            raise ValueError(f"model.horizon_ramp_steps={self.horizon_ramp_steps} must be >= 0")
        if self.scales < 0:
            raise ValueError(f"model.scales={self.scales} must be >= 0")
        if (
            self.motion_kernels < 1
            or self.motion_kernel_size < 1
            or self.motion_kernel_size % 2 == 0
        ):
            raise ValueError(
                f"model.motion_kernels={self.motion_kernels} must be >= 1 and "
                f"model.motion_kernel_size={self.motion_kernel_size} odd and >= 1"
            )
        if self.max_flow <= 0:
            raise ValueError(f"model.max_flow={self.max_flow} must be > 0")
        if self.gdl_weight < 0 or self.ssim_weight < 0:
            raise ValueError("model.gdl_weight and model.ssim_weight must be >= 0")
        if self.ssim_weight > 0 and self.frame_size < 11:
            raise ValueError(f"model.ssim_weight needs frames of >= 11 px, not {self.frame_size}")
        if not 0.0 <= self.scheduled_sampling <= 1.0:
            raise ValueError(
                f"model.scheduled_sampling={self.scheduled_sampling} must be in [0, 1]"
            )

    @property
    def conditional_reconstruct(self) -> bool:
        """Whether the reconstruction decoder is fed its previous frame."""
        return self.conditional is True or self.conditional == "reconstruct"

    @property
    def conditional_predict(self) -> bool:
        """Whether the future predictor is fed its previous frame."""
        return self.conditional is True or self.conditional == "predict"


# ---------------------------------------------------------------------------------------------
# Recurrent stacks


class PeepholeLSTM(nn.Module):
    """A stack of LSTM layers with peephole connections (Gers & Schmidhuber, 2000): the input,
    forget and output gates also read the cell, through one weight per unit (the official
    code's `w_diag`). nn.LSTM's calling convention (batch_first=True) and gate order:

        i_t = σ(W_i [x_t, h_{t-1}] + p_i ⊙ c_{t-1} + b_i)
        f_t = σ(W_f [x_t, h_{t-1}] + p_f ⊙ c_{t-1} + b_f)
        g_t = tanh(W_g [x_t, h_{t-1}] + b_g)
        c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
        o_t = σ(W_o [x_t, h_{t-1}] + p_o ⊙ c_t + b_o)
        h_t = o_t ⊙ tanh(c_t)

    forward(x (B, T, In), state=None) -> (top-layer outputs (B, T, H), (h_n, c_n)), h_n and
    c_n (layers, B, H); a missing state is zero. Layer by layer: W_x x_t + b for all steps in
    one matrix product, the recurrence step by step (no cuDNN kernel has peepholes). Weights
    start as nn.LSTM's (uniform in ±1/sqrt(H)), the peepholes uniform in ±0.1 (the official
    code's scale for them).
    """

    def __init__(self, input_size: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.hidden = hidden
        bound = 1.0 / math.sqrt(hidden)

        def uniform(*shape: int, scale: float = bound) -> nn.Parameter:
            return nn.Parameter(torch.empty(*shape).uniform_(-scale, scale))

        sizes = [input_size] + [hidden] * (layers - 1)
        self.weight_ih = nn.ParameterList(uniform(4 * hidden, n) for n in sizes)
        self.weight_hh = nn.ParameterList(uniform(4 * hidden, hidden) for _ in sizes)
        self.bias = nn.ParameterList(uniform(4 * hidden) for _ in sizes)
        self.peephole = nn.ParameterList(uniform(3, hidden, scale=0.1) for _ in sizes)

    def forward(self, x: Tensor, state: LSTMState | None = None) -> tuple[Tensor, LSTMState]:
        layers = len(self.weight_ih)
        if state is None:
            zeros = x.new_zeros(layers, x.shape[0], self.hidden)
            state = (zeros, zeros)
        h_n, c_n = [], []
        layer_input = x  # (B, T, In)
        for layer in range(layers):
            h, c = state[0][layer], state[1][layer]
            p_i, p_f, p_o = self.peephole[layer]
            # W_x x_t + b for every step at once: (B, T, 4H)
            input_gates = F.linear(layer_input, self.weight_ih[layer], self.bias[layer])
            outputs = []
            for step_gates in input_gates.unbind(1):
                i, f, g, o = (step_gates + F.linear(h, self.weight_hh[layer])).chunk(4, dim=-1)
                c = torch.sigmoid(f + p_f * c) * c + torch.sigmoid(i + p_i * c) * torch.tanh(g)
                h = torch.sigmoid(o + p_o * c) * torch.tanh(c)
                outputs.append(h)
            layer_input = torch.stack(outputs, dim=1)
            h_n.append(h)
            c_n.append(c)
        return layer_input, (torch.stack(h_n), torch.stack(c_n))


def init_uniform_(module: nn.Module, scale: float) -> None:
    """The official code's initialisation of `module`: every weight uniform in ±scale, every
    bias 0; peephole weights keep their own (±0.1, the official scale for them)."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if "peephole" in name:
                continue
            if "bias" in name:
                param.zero_()
            else:
                param.uniform_(-scale, scale)


class ConvLSTMCell(nn.Module):
    """One ConvLSTM layer (Shi et al., 2015): the LSTM's matrix products become convolutions.

        [i, f, o, g] = W ∗ [x_t, h_{t-1}] + b        one k×k convolution with 4·Ch outputs
                     = (W_x ∗ x_t + b) + W_h ∗ h_{t-1}
        c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g)
        h_t = σ(o) ⊙ tanh(c_t)

    (without Shi's peephole terms, like nn.LSTM.) The convolution is linear, so it splits into
    an input part and a recurrent part (W = [W_x, W_h] along input channels, one parameter):
    `input_gates` computes W_x ∗ x_t + b for every step of a known input sequence in one batched
    convolution, and the sequential loop runs only `recurrent` (W_h ∗ h_{t-1} and the gates),
    as cuDNN does for nn.LSTM.
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.gates = nn.Conv2d(
            in_channels + hidden_channels, 4 * hidden_channels, kernel, padding=kernel // 2
        )
        # Forget-gate bias 1: the cell remembers by default at initialisation (Jozefowicz et al.,
        # 2015); the gates are ordered i, f, o, g.
        with torch.no_grad():
            self.gates.bias[hidden_channels : 2 * hidden_channels].fill_(1.0)

    def split_weight(self) -> tuple[Tensor, Tensor]:
        """W = [W_x, W_h] along input channels, each made contiguous: split once per sequence,
        so every step reuses one W_h and its gradient accumulates in one tensor."""
        w_x, w_h = self.gates.weight.split(
            [self.in_channels, self.gates.in_channels - self.in_channels], dim=1
        )
        return w_x.contiguous(), w_h.contiguous()

    def input_gates(self, x: Tensor, w_x: Tensor) -> Tensor:
        """W_x ∗ x + b for a batch of inputs x (N, Cin, h, w) -> (N, 4·Ch, h, w)."""
        return F.conv2d(x, w_x, self.gates.bias, padding=self.gates.padding)

    def recurrent(self, input_gates: Tensor, state: LSTMState, w_h: Tensor) -> LSTMState:
        """One step from precomputed W_x ∗ x_t + b (B, 4·Ch, h, w) and (h_{t-1}, c_{t-1})."""
        h, c = state
        gates = input_gates + F.conv2d(h, w_h, padding=self.gates.padding)
        i, f, o, g = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c

    def forward(self, x: Tensor, state: LSTMState) -> LSTMState:
        """One step: x (B, Cin, h, w), state (h, c) each (B, Ch, h, w)."""
        w_x, w_h = self.split_weight()
        return self.recurrent(self.input_gates(x, w_x), state, w_h)


class ConvLSTM(nn.Module):
    """A stack of ConvLSTM layers with nn.LSTM's calling convention (batch_first=True).

    forward(x (B, T, Cin, h, w), state=None) -> (top-layer outputs (B, T, Ch, h, w), (h_n, c_n))
    with h_n, c_n (layers, B, Ch, h, w); a missing state is zero, as in nn.LSTM.

    Layer by layer, like cuDNN: a layer's whole input sequence is known once the layer below has
    run, so its input convolution is one batched call over all T steps and only the recurrent
    part is sequential.
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel: int, layers: int) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.cells = nn.ModuleList(
            ConvLSTMCell(in_channels if layer == 0 else hidden_channels, hidden_channels, kernel)
            for layer in range(layers)
        )

    def forward(self, x: Tensor, state: LSTMState | None = None) -> tuple[Tensor, LSTMState]:
        batch, steps, _, height, width = x.shape
        if state is None:
            zeros = x.new_zeros(len(self.cells), batch, self.hidden_channels, height, width)
            state = (zeros, zeros)
        h_n, c_n = [], []
        layer_input = x  # (B, T, C, h, w)
        for cell, h, c in zip(self.cells, state[0], state[1]):
            w_x, w_h = cell.split_weight()
            flat = layer_input.flatten(0, 1)  # (B·T, C, h, w): W_x ∗ x_t + b for all t at once
            input_gates = cell.input_gates(flat, w_x).unflatten(0, (batch, steps))
            outputs = []
            for step_gates in input_gates.unbind(1):  # unbind: one stack in backward, no copies
                h, c = cell.recurrent(step_gates, (h, c), w_h)
                outputs.append(h)
            layer_input = torch.stack(outputs, dim=1)
            h_n.append(h)
            c_n.append(c)
        return layer_input, (torch.stack(h_n), torch.stack(c_n))


class TemporalAttention(nn.Module):
    """Scaled dot-product attention of a decoder state over the encoder's per-step states
    (Luong et al., 2015, "general" score):

        q   = W_q h^dec_{k-1}                       query: the decoder's top-layer state
        a_s = softmax_s(<q, e_s> / sqrt(d))          one weight per encoder step s = 1..T
        context_k = Σ_s a_s e_s

    For ConvLSTM states the dot product runs over channels at each grid position, so every
    patch attends over time on its own.
    """

    def __init__(self, query: nn.Module, features: int) -> None:
        super().__init__()
        self.query = query  # nn.Linear (fc) or a 1×1 nn.Conv2d (conv)
        self.scale = 1.0 / math.sqrt(features)

    def forward(self, state: Tensor, memory: Tensor) -> Tensor:
        # state (B, *F); memory (B, S, *F) with F = (d,) or (d, h, w)
        q = self.query(state).unsqueeze(1)  # (B, 1, *F)
        scores = (memory * q).sum(dim=2) * self.scale  # (B, S) or (B, S, h, w)
        weights = scores.softmax(dim=1).unsqueeze(2)  # (B, S, 1, ...)
        return (weights * memory).sum(dim=1)  # (B, *F)


def output_to_frame(raw: Tensor, loss: str) -> Tensor:
    """Raw decoder outputs -> frame values in [0, 1]: sigmoid of logits ("bce"), or the
    regressed values clamped ("mse", "l1")."""
    return torch.sigmoid(raw) if loss == "bce" else raw.clamp(0.0, 1.0)


def time_distributed(module: nn.Module, x: Tensor) -> Tensor:
    """Apply a per-frame module to (B, K, ...) by folding time into the batch."""
    return module(x.flatten(0, 1)).unflatten(0, x.shape[:2])


# ---------------------------------------------------------------------------------------------
# Decoders


class Decoder(nn.Module):
    """One decoder of the composite model: an LSTM stack started from the encoder's final
    state, and a readout from its top-layer state to a frame.

        input_k = [y_{k-1} if conditional] ⊕ [context_k if attention]     (a zero if neither)
        h_k     = LSTM(input_k, h_{k-1}),      h_0 = the encoder's final state
        ŷ_k     = readout(h_k ⊕ context_k)     logits (loss="bce") or values (loss="mse")

    y_{k-1} is the true previous frame while training (teacher forcing), the decoder's own
    output frame at inference or with probability p under scheduled sampling (Bengio et al.,
    2015; the fed-back frame is detached, as there); y_0 is given by the caller. Everything is
    in feature space: y (B, *F) with F = (D,) for fc or (C·p², h, w) for conv.
    """

    def __init__(
        self,
        lstm: nn.Module,
        readout: nn.Module,
        attention: TemporalAttention | None,
        conditional: bool,
        loss: str,
        channel_dim: int,
        feedback: Callable[[Tensor, Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.lstm = lstm  # nn.LSTM or ConvLSTM, batch_first
        self.readout = readout
        self.attention = attention
        self.conditional = conditional
        self.loss = loss  # "bce": outputs are logits; "mse", "l1": pixel values
        self.channel_dim = channel_dim  # the feature/channel axis: -1 (fc) or -3 (conv)
        # feedback(raw_k, y_{k-1}) -> y_k: the frame a raw output stands for, given the previous
        # one (the warp head moves it); None: output_to_frame(raw_k) (the pixel head)
        self.feedback = feedback

    def _input(self, previous: Tensor, context: Tensor | None) -> Tensor:
        parts = [previous] if self.conditional else []
        if context is not None:
            parts.append(context)
        if not parts:  # unconditional, no attention: a single zero, nn.LSTM needs an input
            return torch.zeros_like(previous.narrow(self.channel_dim, 0, 1))
        return torch.cat(parts, dim=self.channel_dim)

    def _next_input(
        self, raw: Tensor, previous: Tensor, truth: Tensor | None, sampling_prob: float
    ) -> Tensor:
        if self.feedback is None:
            own = output_to_frame(raw, self.loss).detach()
        else:
            own = self.feedback(raw, previous).detach()
        if truth is None:
            return own
        if sampling_prob <= 0.0:
            return truth
        # Scheduled sampling: per sequence, feed the own output with probability p.
        use_own = torch.rand(own.shape[0], device=own.device) < sampling_prob
        return torch.where(use_own.view(-1, *[1] * (own.dim() - 1)), own, truth)

    def forward(
        self,
        state: LSTMState,
        memory: Tensor,
        first: Tensor,
        steps: int,
        targets: Tensor | None = None,
        sampling_prob: float = 0.0,
    ) -> Tensor:
        """Unroll `steps` frames from the encoder's final `state`.

        memory (B, T, *S): encoder top-layer states (attended over); first (B, *F): y_0;
        targets (B, steps, *F): the true frames, fed back when conditional (None: feed own
        outputs). Returns raw outputs (B, steps, *F).
        """
        if targets is not None and targets.shape[1] != steps:
            raise ValueError(f"targets have {targets.shape[1]} steps, expected {steps}")
        teacher_forced = targets is not None and sampling_prob <= 0.0
        if self.attention is None and (teacher_forced or not self.conditional):
            # Every input is known in advance: one call over the whole sequence (cuDNN for fc).
            if self.conditional:
                previous = torch.cat([first.unsqueeze(1), targets[:, : steps - 1]], dim=1)
            else:
                previous = first.unsqueeze(1).expand(-1, steps, *first.shape[1:])
            outputs, _ = self.lstm(self._input(previous, None), state)  # (B, steps, *S)
            return time_distributed(self.readout, outputs)

        raw_outputs = []
        previous = first
        for k in range(steps):
            context = None if self.attention is None else self.attention(state[0][-1], memory)
            output, state = self.lstm(self._input(previous, context).unsqueeze(1), state)
            top = output[:, 0]  # (B, *S)
            if context is not None:
                top = torch.cat([top, context], dim=self.channel_dim)
            raw = self.readout(top)  # (B, *F)
            raw_outputs.append(raw)
            if self.conditional:
                truth = None if targets is None else targets[:, k]
                previous = self._next_input(raw, previous, truth, sampling_prob)
        return torch.stack(raw_outputs, dim=1)


# ---------------------------------------------------------------------------------------------
# The composite model


class CompositeLSTM(nn.Module):
    """Encoder LSTM + reconstruction decoder (reversed input) + future predictor."""

    def __init__(self, cfg: LSTMAutoencoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.cell == "fc":
            self.channel_dim = -1
            self.frame_features = cfg.channels * cfg.frame_size**2  # D
            self.state_features = cfg.hidden
            self.encoder = self._fc_lstm(self.frame_features)
        else:
            self.channel_dim = -3
            self.frame_features = cfg.channels * cfg.patch**2  # channels of the patch grid
            self.state_features = cfg.conv_channels
            self.encoder = ConvLSTM(self.frame_features, cfg.conv_channels, cfg.kernel, cfg.layers)
        self.warp = cfg.output != "pixels"  # a motion head: "warp" (flow) or "cdna" (kernels)
        if cfg.output == "cdna":  # initial kernel logits (N, k²), from the config: not saved
            bank = kernel_bank(cfg.motion_kernels, cfg.motion_kernel_size)
            self.register_buffer("kernel_bank", bank, persistent=False)
        if cfg.init_range > 0:
            init_uniform_(self.encoder, cfg.init_range)
        self.reconstructor = None
        if cfg.decoders != "predict":
            self.reconstructor = self._decoder(False, cfg.conditional_reconstruct)
        self.predictor = None
        if cfg.decoders != "reconstruct":
            self.predictor = self._decoder(self.warp, cfg.conditional_predict)

    def _fc_lstm(self, input_size: int) -> nn.Module:
        """An fc LSTM stack: nn.LSTM (cuDNN), or PeepholeLSTM with model.peephole."""
        cfg = self.cfg
        if cfg.peephole:
            return PeepholeLSTM(input_size, cfg.hidden, cfg.layers)
        return nn.LSTM(input_size, cfg.hidden, cfg.layers, batch_first=True)

    def _decoder(self, warp: bool, conditional: bool) -> Decoder:
        cfg = self.cfg
        frame_in = self.frame_features if conditional else 0
        context_in = self.state_features if cfg.attention else 0
        input_size = max(frame_in + context_in, 1)  # an input-less decoder is fed one zero
        readout_in = self.state_features + context_in
        # Readout outputs: a frame's features (C per pixel); for the warp head the appearance
        # (C per pixel), then a mask (1) and a flow (2) per cell of the frame_size/patch grid,
        # upsampled: smooth fields, where per-pixel ones from patch features come out blocky.
        # The kernel head: a mask and N selections per cell, and N k×k kernel logits (fc: once;
        # conv: per cell, averaged over the grid: every cell votes for the frame's kernels).
        grid = cfg.frame_size // cfg.patch
        coarse, kernels = (3, 0) if warp else (0, 0)
        if warp and cfg.output == "cdna":
            coarse, kernels = 1 + cfg.motion_kernels, cfg.motion_kernels * cfg.motion_kernel_size**2
        if cfg.cell == "fc":
            lstm = self._fc_lstm(input_size)
            outputs = cfg.channels * cfg.frame_size**2 + coarse * grid**2 + kernels
            readout = nn.Linear(readout_in, outputs)
            query = nn.Linear(cfg.hidden, cfg.hidden, bias=False)
            last, per_map = readout, cfg.frame_size**2
        else:
            lstm = ConvLSTM(input_size, cfg.conv_channels, cfg.kernel, cfg.layers)
            outputs = cfg.channels * cfg.patch**2 + coarse + kernels
            readout = nn.Sequential(  # a small head from the state grid back to patch pixels
                nn.Conv2d(readout_in, cfg.conv_channels, 3, padding=1),
                nn.GELU(),
                nn.Conv2d(cfg.conv_channels, outputs, 1),
            )
            query = nn.Conv2d(cfg.conv_channels, cfg.conv_channels, 1, bias=False)
            last, per_map = readout[-1], cfg.patch**2
        attention = TemporalAttention(query, self.state_features) if cfg.attention else None
        if cfg.init_range > 0:
            for module in (lstm, readout, attention):
                if module is not None:
                    init_uniform_(module, cfg.init_range)
        feedback = None
        if warp:  # mask and flow rows start at zero: the head starts as copy-last-frame
            zero_rows(last, cfg.channels * per_map)
            feedback = self._warp_feedback
        return Decoder(lstm, readout, attention, conditional, cfg.loss, self.channel_dim, feedback)

    # Frames <-> features. fc: (.., C, H, W) <-> (.., C·H·W); conv: space-to-depth by `patch`,
    # (.., C, H, W) <-> (.., C·p², H/p, W/p).
    def embed(self, frames: Tensor) -> Tensor:
        if self.cfg.cell == "fc":
            return frames.flatten(-3)
        return F.pixel_unshuffle(frames, self.cfg.patch)

    def unembed(self, features: Tensor) -> Tensor:
        if self.cfg.cell == "fc":
            size = self.cfg.frame_size
            return features.unflatten(-1, (self.cfg.channels, size, size))
        return F.pixel_shuffle(features, self.cfg.patch)

    def to_frame(self, raw: Tensor) -> Tensor:
        """Raw outputs of the pixel heads (forward()'s "reconstruction", and "prediction" with
        output="pixels") -> frames in [0, 1]."""
        return output_to_frame(raw, self.cfg.loss)

    def _head_maps(self, raw: Tensor) -> dict[str, Tensor]:
        """A motion head's raw readout (..., *F_out) -> its maps: "appearance" logits (..., C, H,
        W) and "mask" (..., 1, H, W), upsampled from the grid; output="warp" also "flow" (..., 2,
        H, W) in pixels; output="cdna" "select" (..., N, H, W) and normalised "kernels" (..., N,
        k, k)."""
        cfg = self.cfg
        size, c, grid = cfg.frame_size, cfg.channels, cfg.frame_size // cfg.patch
        count = 3 if cfg.output == "warp" else 1 + cfg.motion_kernels
        if cfg.cell == "fc":
            split = c * size**2
            appearance = raw[..., :split].unflatten(-1, (c, size, size))
            coarse = raw[..., split : split + count * grid**2].unflatten(-1, (count, grid, grid))
            votes = raw[..., split + count * grid**2 :]  # (..., N·k²)
        else:
            split = c * cfg.patch**2
            appearance = F.pixel_shuffle(raw[..., :split, :, :], cfg.patch)
            coarse = raw[..., split : split + count, :, :]
            votes = raw[..., split + count :, :, :].mean((-2, -1))  # (..., N·k²)
        if cfg.output == "warp":
            # |f| <= max_flow · frame_size: a flow that can reach anywhere learns to erase moving
            # objects by sampling the background far away (seen on Moving MNIST) instead of
            # moving them; tanh keeps f = raw near 0, so the head still starts as copy-last
            bound = cfg.max_flow * size
            coarse = torch.cat(
                [coarse[..., :1, :, :], bound * torch.tanh(coarse[..., 1:, :, :] / bound)], -3
            )
        lead = coarse.shape[:-3]
        fields = upsample_flow(coarse.flatten(0, -4), size).unflatten(0, lead)
        maps = {"appearance": appearance, "mask": fields[..., :1, :, :]}
        if cfg.output == "warp":
            maps["flow"] = fields[..., 1:, :, :]
            return maps
        k = cfg.motion_kernel_size
        logits = votes.unflatten(-1, (cfg.motion_kernels, k * k)) + self.kernel_bank
        maps["select"] = fields[..., 1:, :, :]
        maps["kernels"] = logits.float().softmax(-1).unflatten(-1, (k, k))
        return maps

    def _warp_feedback(self, raw: Tensor, previous: Tensor) -> Tensor:
        """The motion head's y_k in feature space from its raw readout and y_{k-1} (features)."""
        m = self._head_maps(raw)
        frame = self.unembed(previous)
        if self.cfg.output == "warp":
            return self.embed(compose(frame, m["appearance"], m["mask"], m["flow"])[0])
        parts = (m["appearance"], m["mask"], m["select"], m["kernels"])
        return self.embed(compose_kernels(frame, *parts)[0])

    def _frames(self, raw: Tensor, last: Tensor) -> dict[str, Tensor]:
        """Predicted frames (B, K, C, H, W) in [0, 1] from the predictor's raw outputs
        (B, K, *F) and the last observed frame's features (B, *F); with a motion head also
        its "flow" (B, K, 2, H, W) (cdna: the flow its kernels imply) and "mask" (B, K, 1, H, W),
        with cdna also its "kernels" (B, K, N, k, k)."""
        if not self.warp:
            return {"frames": self.to_frame(self.unembed(raw))}
        m = self._head_maps(raw)
        first = self.unembed(last).to(m["appearance"].dtype)
        if self.cfg.output == "warp":
            return rollout(first, m["appearance"], m["mask"], m["flow"])
        return rollout_kernels(first, m["appearance"], m["mask"], m["select"], m["kernels"])

    def forward(
        self,
        observed: Tensor,
        future: Tensor | None = None,
        *,
        horizon: int | None = None,
        teacher_forcing: bool = True,
        sampling_prob: float = 0.0,
    ) -> dict[str, Tensor]:
        """Run the encoder and both decoders.

        observed (B, T, C, H, W) and future (B, K, C, H, W) in [0, 1]. Conditional decoders are
        fed the true previous frame when `teacher_forcing` (the reversed observed frames for
        the reconstruction; `future`, if given, for the prediction), else their own outputs;
        `sampling_prob` is the scheduled-sampling probability of feeding their own output
        anyway. Returns raw outputs (logits for loss="bce", values for "mse" and "l1"):
            "reconstruction" (B, T, C, H, W), whose target is reconstruction_target(observed);
            "prediction" (B, K, C, H, W), K = future's length, else `horizon` or cfg.horizon
              (output="warp": the predicted frames themselves, in [0, 1]);
            "prediction_frames": the predicted frames in [0, 1], with output="warp" also
              "flow" (B, K, 2, H, W) and "mask" (B, K, 1, H, W).
        """
        x = self.embed(observed)  # (B, T, *F)
        memory, state = self.encoder(x)  # (B, T, *S), final (h, c)
        outputs: dict[str, Tensor] = {}
        if self.reconstructor is not None:
            reversed_x = x.flip(1)
            raw = self.reconstructor(
                state,
                memory,
                first=torch.zeros_like(x[:, 0]),
                steps=x.shape[1],
                targets=reversed_x if teacher_forcing else None,
                sampling_prob=sampling_prob,
            )
            outputs["reconstruction"] = self.unembed(raw)
        if self.predictor is not None:
            truth = self.embed(future) if future is not None and teacher_forcing else None
            steps = future.shape[1] if future is not None else horizon or self.cfg.horizon
            # y_0 of the predictor is the last observed frame: the true frame before x_{T+1}.
            raw = self.predictor(
                state,
                memory,
                first=x[:, -1],
                steps=steps,
                targets=truth,
                sampling_prob=sampling_prob,
            )
            frames = self._frames(raw, x[:, -1])
            outputs["prediction"] = frames["frames"] if self.warp else self.unembed(raw)
            outputs["prediction_frames"] = frames.pop("frames")
            outputs.update(frames)
        return outputs

    def _require_predictor(self) -> Decoder:
        if self.predictor is None:
            raise ValueError("model.decoders='reconstruct' has no future predictor to predict with")
        return self.predictor

    def _roll_predictor(
        self, state: LSTMState, memory: Tensor, last: Tensor, horizon: int
    ) -> dict[str, Tensor]:
        raw = self._require_predictor()(state, memory, first=last, steps=horizon)
        out = self._frames(raw, last)
        return {k: v.to(last.dtype) for k, v in out.items()}  # bf16 under autocast -> input's

    @torch.no_grad()
    def predict(self, observed: Tensor, horizon: int) -> Tensor:
        """Future frames (B, horizon, C, H, W) in [0, 1] from observed (B, T, C, H, W); outputs
        are fed back, so any horizon works (also beyond the trained one)."""
        return self.explain(observed, horizon)["frames"]

    @torch.no_grad()
    def explain(self, observed: Tensor, horizon: int) -> dict[str, Tensor]:
        """predict(), with what the warp head did: {"frames" (B, horizon, C, H, W), and with
        output="warp" "flow" (B, horizon, 2, H, W) pixels and "mask" (B, horizon, 1, H, W)
        (1: new appearance, 0: the moved previous frame)}."""
        self._require_predictor()
        x = self.embed(observed)
        memory, state = self.encoder(x)
        return self._roll_predictor(state, memory, x[:, -1], horizon)

    def stream(self, batch_size: int = 1) -> LSTMStream:
        """Stateful incremental inference for live video: see LSTMStream."""
        self._require_predictor()
        return LSTMStream(self, batch_size)


class LSTMStream:
    """Incremental inference: `step(frame)` advances the encoder by one frame, `predict(h)`
    rolls the future predictor from the current state without changing it (states are
    tensors that are never written in place, so sharing them is free).

    For attention the last `context` encoder states are kept: memory stays bounded on an
    endless stream, and the decoders were trained attending over that many. Over T <= context
    frames, step() then predict(h) equals CompositeLSTM.predict(frames, h).
    """

    def __init__(self, model: CompositeLSTM, batch_size: int = 1) -> None:
        self.model = model
        self.batch_size = batch_size
        self.state: LSTMState | None = None
        self.memory: deque[Tensor] = deque(maxlen=model.cfg.context)  # (B, *S) per step
        self.last: Tensor | None = None  # the last frame, as features (B, *F)
        self.frames_seen = 0
        self.parts = [(batch_size, 0)]  # (batch size, frames seen) of the streams merged here

    @torch.no_grad()
    def step(self, frame: Tensor) -> None:
        """Feed one frame (B, C, H, W) in [0, 1]."""
        if frame.shape[0] != self.batch_size:
            raise ValueError(f"frame batch {frame.shape[0]} != stream batch {self.batch_size}")
        x = self.model.embed(frame)  # (B, *F)
        output, self.state = self.model.encoder(x.unsqueeze(1), self.state)
        self.memory.append(output[:, 0])
        self.last = x
        self.frames_seen += 1

    @torch.no_grad()
    def predict(self, horizon: int) -> Tensor:
        """The next `horizon` frames (B, horizon, C, H, W) in [0, 1]."""
        if self.state is None or self.last is None:
            raise RuntimeError("LSTMStream.predict() before any step(frame)")
        memory = torch.stack(list(self.memory), dim=1)  # (B, <=context, *S)
        return self.model._roll_predictor(self.state, memory, self.last, horizon)["frames"]

    # Cross-session batching (a server stepping many live streams at once): streams with equal
    # batch_key() merge into one batch, step together, and split back; row i of the batch is
    # stream i, so the result equals stepping each alone.
    def batch_key(self) -> tuple[int, int]:
        """Streams with equal keys can merge: the same history length (of the memory too)."""
        return (min(self.frames_seen, 1), len(self.memory))

    @classmethod
    def merge(cls, streams: list[LSTMStream]) -> LSTMStream:
        """One stream whose batch is the streams' batches side by side (equal batch_key)."""
        merged = cls(streams[0].model, sum(s.batch_size for s in streams))
        if streams[0].state is not None:
            h, c = zip(*(s.state for s in streams if s.state is not None), strict=True)
            merged.state = (torch.cat(h, dim=1), torch.cat(c, dim=1))  # (layers, B, *S)
            merged.last = torch.cat([s.last for s in streams if s.last is not None])
            for step in zip(*(s.memory for s in streams), strict=True):
                merged.memory.append(torch.cat(step))
        merged.parts = [(s.batch_size, s.frames_seen) for s in streams]
        return merged

    def split(self) -> list[LSTMStream]:
        """The inverse of merge (copies, so the merged batch can be freed)."""
        out, start = [], 0
        for n, seen in self.parts:
            rows = slice(start, start + n)
            s = LSTMStream(self.model, n)
            if self.state is not None and self.last is not None:
                s.state = (self.state[0][:, rows].clone(), self.state[1][:, rows].clone())
                s.last = self.last[rows].clone()
                s.memory.extend(m[rows].clone() for m in self.memory)
            s.frames_seen = seen + self.frames_seen  # its own count, plus steps taken merged
            out.append(s)
            start += n
        return out


# ---------------------------------------------------------------------------------------------
# Losses and the training task


def reconstruction_target(observed: Tensor) -> Tensor:
    """What the reconstruction decoder must output: the observed frames in reverse order."""
    return observed.flip(1)


def frame_loss(raw: Tensor, target: Tensor, loss: str) -> Tensor:
    """Mean per-pixel loss of a pixel head's raw outputs against target frames in [0, 1]:
    Bernoulli cross-entropy on logits ("bce"), squared ("mse") or absolute error ("l1").
    Multiply by C·H·W for the per-frame values of the literature (summed over a frame's
    pixels)."""
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(raw, target)
    if loss == "l1":
        return F.l1_loss(raw, target)
    return F.mse_loss(raw, target)


class ClippedMomentumSGD(torch.optim.Optimizer):
    """The official code's update (util.py, Param.Update), per parameter w with gradient g:

        v ← μ v − lr (g + λ w)          momentum μ, weight decay λ
        v ← clamp(v, −clip, clip)        each element of the step (clip > 0)
        w ← w + v

    The velocity v is the step itself (the learning rate inside it), and clipping it bounds how
    far any weight moves per step: with lr = clip = 1e-4 on the summed loss, a weight moves at
    most 1e-4 per step however large its gradient.
    """

    def __init__(
        self,
        params: Any,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        step_clip: float = 0.0,
    ) -> None:
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, step_clip=step_clip)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mu, decay, clip = (
                group[k] for k in ("lr", "momentum", "weight_decay", "step_clip")
            )
            for w in group["params"]:
                if w.grad is None:
                    continue
                grad = w.grad if decay == 0 else w.grad.add(w, alpha=decay)
                state = self.state[w]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(w)
                v = state["velocity"]
                v.mul_(mu).add_(grad, alpha=-lr)
                if clip > 0:
                    v.clamp_(-clip, clip)
                w.add_(v)
        return loss


class LSTMAutoencoderTask(TrainingTask):
    """The composite LSTM's training task: one optimiser, one loss

        L = reconstruct_weight · ℓ(reconstruction, reversed observed) + ℓ(prediction, future)
            + gdl_weight · GDL(x̂, future) + ssim_weight · (1 − SSIM(x̂, future))

    with ℓ the mean per-pixel loss (a sane scale for Adam) and x̂ the predicted frames; with
    reduction="sum" every term is multiplied by the number of values it averages (B · frames ·
    C·H·W of its target), so ℓ is the sum over the batch, as the official code's gradient
    (with W data-parallel workers DDP averages their gradients: the global batch's sum / W).
    The logs give each ℓ term per frame, summed over its pixels, the unit the literature
    reports (e.g. BCE ≈ 341), whatever the reduction. The optimiser: Adam, or with
    optimizer="sgd" the official code's momentum SGD with a clipped step (ClippedMomentumSGD;
    weight decay on the weights, not on the biases, as there).
    """

    def __init__(self, **options: Any) -> None:
        self.cfg = family_config(LSTMAutoencoderConfig, "lstm_autoencoder", options)
        self.clip_length = self.cfg.context + self.cfg.horizon
        self.networks = nn.ModuleDict({"model": CompositeLSTM(self.cfg)})

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.cfg
        if cfg.optimizer == "sgd":
            named = list(self.networks["model"].named_parameters())
            groups = [
                {"params": [p for n, p in named if "bias" not in n]},
                {"params": [p for n, p in named if "bias" in n], "weight_decay": 0.0},
            ]
            sgd = ClippedMomentumSGD(groups, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.step_clip)
            return {"model": sgd}
        params = list(self.networks["model"].parameters())
        # The fused Adam kernel (one launch for all parameters on CUDA; ~4x faster than the
        # default per-tensor loop on CPU) where every parameter is a float on CPU or CUDA.
        fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
        adam = torch.optim.Adam(
            params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay, fused=fused or None
        )
        return {"model": adam}

    def sampling_prob(self, step: int) -> float:
        """Scheduled sampling: 0 at step 0, rising linearly to cfg.scheduled_sampling."""
        cfg = self.cfg
        conditional = cfg.conditional_reconstruct or cfg.conditional_predict
        if not conditional or cfg.scheduled_sampling <= 0.0:
            return 0.0
        return cfg.scheduled_sampling * min(1.0, step / max(1, cfg.sampling_ramp_steps))

    def trained_horizon(self, step: int) -> int:
        """Future frames in the loss at `step`: the horizon, or with horizon_ramp_steps a
        curriculum from 1 to it (near futures first: a flow learns to track a moving object
        there, where a far future rewards erasing it)."""
        cfg = self.cfg
        if cfg.horizon_ramp_steps <= 0:
            return cfg.horizon
        return min(cfg.horizon, 1 + step * cfg.horizon // cfg.horizon_ramp_steps)

    def losses(
        self, outputs: dict[str, Tensor], observed: Tensor, future: Tensor
    ) -> dict[str, Tensor]:
        """Mean per-pixel loss terms and the weighted total ("loss"; reduction="sum": each
        term times the number of values it averages)."""
        terms: dict[str, Tensor] = {}
        total = observed.new_zeros(())
        summed = self.cfg.reduction == "sum"
        if "reconstruction" in outputs:
            terms["reconstruction"] = frame_loss(
                outputs["reconstruction"], reconstruction_target(observed), self.cfg.loss
            )
            scale = observed.numel() if summed else 1
            total = total + self.cfg.reconstruct_weight * scale * terms["reconstruction"]
        if "prediction" in outputs:
            cfg, raw = self.cfg, outputs["prediction"]
            prediction_total = future.new_zeros(())
            if cfg.output != "pixels":  # a motion head outputs frames already
                frames = raw
                terms["prediction"] = pixel_loss(frames, future, cfg.loss)
            else:
                frames = output_to_frame(raw, cfg.loss)
                terms["prediction"] = frame_loss(raw, future, cfg.loss)
            prediction_total = prediction_total + terms["prediction"]
            if cfg.scales > 0:
                terms["pyramid"] = pyramid_loss(frames, future, cfg.loss, cfg.scales)
                prediction_total = prediction_total + terms["pyramid"]
            if cfg.gdl_weight > 0:
                terms["gdl"] = gradient_difference_loss(frames, future)
                prediction_total = prediction_total + cfg.gdl_weight * terms["gdl"]
            if cfg.ssim_weight > 0:
                terms["ssim"] = ssim_loss(frames, future)
                prediction_total = prediction_total + cfg.ssim_weight * terms["ssim"]
            total = total + (future.numel() if summed else 1) * prediction_total
        terms["loss"] = total
        return terms

    def training_step(self, batch: Tensor, step: int, update: UpdateFn) -> dict[str, float]:
        """batch (B, >= context + horizon, C, H, W) in [0, 1]. Returns "loss" (the optimised
        objective: per pixel, or summed with reduction="sum") and, per decoder,
        "reconstruction_loss" / "prediction_loss" per frame (summed over a frame's pixels,
        averaged over frames and batch)."""
        cfg = self.cfg
        if batch.shape[1] < self.clip_length:
            raise ValueError(
                f"clip of {batch.shape[1]} frames, need context + horizon = {self.clip_length}"
            )
        observed = batch[:, : cfg.context]
        future = batch[:, cfg.context : cfg.context + self.trained_horizon(step)]
        sampling_prob = self.sampling_prob(step)
        outputs = self.networks["model"](observed, future, sampling_prob=sampling_prob)
        terms = self.losses(outputs, observed, future)
        update(terms["loss"], "model")

        pixels = batch[0, 0].numel()  # C·H·W
        names = ["loss"] + [
            f"{name}_loss" for name in ("reconstruction", "prediction") if name in terms
        ]
        values = [terms["loss"]] + [terms[name[: -len("_loss")]] * pixels for name in names[1:]]
        for extra in ("pyramid", "gdl", "ssim"):  # the extra terms, as optimised (means)
            if extra in terms:
                names.append(f"{extra}_loss")
                values.append(terms[extra])
        logs = dict(zip(names, torch.stack(values).detach().float().tolist()))  # one sync
        if sampling_prob > 0.0:
            logs["sampling_prob"] = sampling_prob
        return logs

    def inference_model(self) -> CompositeLSTM:
        return self.unwrap("model")

    def config(self) -> dict[str, Any]:
        return asdict(self.cfg)


__all__ = [
    "CONDITIONAL",
    "ClippedMomentumSGD",
    "CompositeLSTM",
    "ConvLSTM",
    "ConvLSTMCell",
    "Decoder",
    "LSTMAutoencoderConfig",
    "LSTMAutoencoderTask",
    "LSTMStream",
    "PeepholeLSTM",
    "TemporalAttention",
    "frame_loss",
    "init_uniform_",
    "output_to_frame",
    "reconstruction_target",
]
