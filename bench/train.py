"""Training-step throughput of the composite LSTM autoencoder: framecast against a plain reference.

On a GPU machine (one line; the paper's fc configuration and the conv cell, each also compiled):

    python bench/train.py --device cuda --compile --json out/bench_train_gpu.json

"framecast" is exactly what `framecast train` runs per step: LSTMAutoencoderTask.training_step
with the trainer's `make_update` (clipping at the default trainer.clip_grad_norm) under the
trainer's default precision (bf16 autocast on CUDA, fp32 on CPU). "reference" is a plain PyTorch
composite model written below as one would from the paper (Srivastava et al. 2015): an nn.LSTM
encoder, two unconditional nn.LSTM decoders (reconstruction of the reversed input, future
prediction), linear readouts, sigmoid + BCE, Adam, fp32, no clipping. On CUDA a second
reference row runs the same plain model under bf16 autocast (the DESIGN.md anchor: 11.7k
samples/s at batch 256 on one H200). `--cell conv` (or `both`) benchmarks the ConvLSTM variant
against a plain ConvLSTM reference (one convolution over [x_t, h_{t-1}] per cell and step).

Every contender trains on the same random clip with the same sizes. After `--warmup` steps each
(excluded; this is where torch.compile compiles), the contenders take turns in blocks of
`--block` steps until each has run `--steps`, so machine noise hits them alike; samples/s is
batch × measured steps / the summed time of a contender's blocks (device synchronised).

    python bench/train.py [--device auto|cpu|cuda] [--cell auto|fc|conv|both] [--hidden 2048]
        [--batch 256] [--frame-size 64] [--steps 50] [--warmup 5] [--compile] [--json PATH]
    python bench/train.py --smoke      # tiny sizes, seconds: the script's own check (tests run it)
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Table  # noqa: E402
from models.lstm_autoencoder import LSTMAutoencoderTask  # noqa: E402
from pipeline.stages.train import TrainerConfig, compile_networks, make_update  # noqa: E402

# ---------------------------------------------------------------------------------------------
# The plain references


class PlainComposite(nn.Module):
    """Composite FC-LSTM autoencoder, unconditional decoders, written the obvious way."""

    def __init__(self, pixels: int, hidden: int) -> None:
        super().__init__()
        self.encoder = nn.LSTM(pixels, hidden, batch_first=True)
        self.reconstructor = nn.LSTM(1, hidden, batch_first=True)
        self.predictor = nn.LSTM(1, hidden, batch_first=True)
        self.reconstruct_out = nn.Linear(hidden, pixels)
        self.predict_out = nn.Linear(hidden, pixels)

    def forward(self, observed: Tensor, future: Tensor) -> Tensor:
        x = observed.flatten(2)  # (B, T, D)
        _, state = self.encoder(x)
        zeros = x.new_zeros(x.shape[0], x.shape[1], 1)
        rec, _ = self.reconstructor(zeros, state)
        pred, _ = self.predictor(x.new_zeros(x.shape[0], future.shape[1], 1), state)
        rec_loss = F.binary_cross_entropy_with_logits(self.reconstruct_out(rec), x.flip(1))
        pred_loss = F.binary_cross_entropy_with_logits(self.predict_out(pred), future.flatten(2))
        return rec_loss + pred_loss


class PlainConvLSTMCell(nn.Module):
    def __init__(self, cin: int, ch: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin + ch, 4 * ch, kernel, padding=kernel // 2)

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        i, f, o, g = self.conv(torch.cat([x, h], 1)).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class PlainConvComposite(nn.Module):
    """Composite ConvLSTM autoencoder on a patch grid, unconditional decoders, step by step."""

    def __init__(self, channels: int, patch: int, ch: int, kernel: int, layers: int) -> None:
        super().__init__()
        self.patch, self.ch = patch, ch
        d = channels * patch**2

        def stack(cin: int) -> nn.ModuleList:
            return nn.ModuleList(
                PlainConvLSTMCell(cin if i == 0 else ch, ch, kernel) for i in range(layers)
            )

        def head() -> nn.Module:
            return nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), nn.GELU(), nn.Conv2d(ch, d, 1))

        self.encoder, self.reconstructor, self.predictor = stack(d), stack(1), stack(1)
        self.reconstruct_out, self.predict_out = head(), head()

    @staticmethod
    def unroll(cells: nn.ModuleList, inputs: list[Tensor], h: list, c: list) -> list[Tensor]:
        outputs = []
        for x in inputs:
            for i, cell in enumerate(cells):
                h[i], c[i] = cell(x, h[i], c[i])
                x = h[i]
            outputs.append(x)
        return outputs

    def forward(self, observed: Tensor, future: Tensor) -> Tensor:
        x = F.pixel_unshuffle(observed, self.patch)  # (B, T, C·p², h, w)
        y = F.pixel_unshuffle(future, self.patch)
        b, _, _, hh, ww = x.shape
        zero = x.new_zeros(b, self.ch, hh, ww)
        h, c = [zero] * len(self.encoder), [zero] * len(self.encoder)
        self.unroll(self.encoder, list(x.unbind(1)), h, c)
        blank = x.new_zeros(b, 1, hh, ww)
        rec = self.unroll(self.reconstructor, [blank] * x.shape[1], list(h), list(c))
        pred = self.unroll(self.predictor, [blank] * y.shape[1], list(h), list(c))
        rec_logits = self.reconstruct_out(torch.stack(rec, 1).flatten(0, 1))
        pred_logits = self.predict_out(torch.stack(pred, 1).flatten(0, 1))
        return F.binary_cross_entropy_with_logits(
            rec_logits, x.flip(1).flatten(0, 1)
        ) + F.binary_cross_entropy_with_logits(pred_logits, y.flatten(0, 1))


# ---------------------------------------------------------------------------------------------
# Contenders


@dataclass
class Contender:
    name: str
    what: str
    step: Callable[[], None]
    reference: str | None = None
    seconds: float = 0.0
    steps: int = 0


def reference_step(model: nn.Module, clip: Tensor, context: int, bf16: bool) -> Callable[[], None]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    observed, future = clip[:, :context], clip[:, context:]
    device = clip.device.type
    cast = torch.autocast(device, dtype=torch.bfloat16) if bf16 else nullcontext()

    def step() -> None:
        with cast:
            loss = model(observed, future)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def framecast_step(
    options: dict, clip: Tensor, device: torch.device, compiled: bool
) -> Callable[[], None]:
    """The per-step work of pipeline.stages.train.train_loop for this task, trainer defaults."""
    t = TrainerConfig(compile=compiled)
    task = LSTMAutoencoderTask(**options)
    task.networks.to(device)
    if t.compile:
        compile_networks(task)
    update = make_update(task.make_optimizers(), t.clip_grad_norm)
    # train_loop's precision rule: bf16 autocast for precision=bf16, or auto on CUDA
    use_bf16 = t.precision == "bf16" or (t.precision == "auto" and device.type == "cuda")
    cast = torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else nullcontext()
    counter = iter(range(10**9))

    def step() -> None:
        for net in task.networks.values():
            net.train()
        with cast:
            task.training_step(clip, next(counter), update)

    return step


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {cpu}, {torch.get_num_threads()} threads"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(contenders: list[Contender], device: torch.device, args: argparse.Namespace) -> None:
    for c in contenders:  # warm-up: cuDNN plans, allocator, torch.compile
        for _ in range(args.warmup):
            c.step()
        sync(device)
        print(f"  warmed up: {c.name}", flush=True)
    for _ in range(math.ceil(args.steps / args.block)):
        for c in contenders:
            n = min(args.block, args.steps - c.steps)
            sync(device)
            start = time.perf_counter()
            for _ in range(n):
                c.step()
            sync(device)
            c.seconds += time.perf_counter() - start
            c.steps += n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument(
        "--cell",
        choices=("auto", "fc", "conv", "both"),
        default="auto",
        help="auto: both on CUDA, fc on CPU",
    )
    ap.add_argument("--hidden", type=int, default=2048, help="fc: LSTM units (the paper: 2048)")
    ap.add_argument("--batch", type=int, default=256, help="fc: clips per step")
    ap.add_argument("--frame-size", type=int, default=64)
    ap.add_argument("--context", type=int, default=10)
    ap.add_argument("--horizon", type=int, default=10)
    ap.add_argument("--conv-batch", type=int, default=64, help="conv: clips per step")
    ap.add_argument("--conv-channels", type=int, default=96)
    ap.add_argument("--conv-layers", type=int, default=4)
    ap.add_argument("--kernel", type=int, default=5)
    ap.add_argument("--patch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=50, help="measured steps per contender")
    ap.add_argument("--warmup", type=int, default=5, help="unmeasured steps per contender")
    ap.add_argument("--block", type=int, default=10, help="steps per turn of a contender")
    ap.add_argument("--compile", action="store_true", help="add framecast with trainer.compile")
    ap.add_argument("--json", default=None)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: checks the script")
    args = ap.parse_args()
    if args.smoke:  # both cells, every row, no timing worth reading
        args.hidden, args.batch, args.frame_size, args.steps, args.warmup, args.block = (
            32,
            4,
            16,
            2,
            1,
            1,
        )
        args.conv_batch, args.conv_channels, args.conv_layers = 2, 8, 1
        args.cell = "both" if args.cell == "auto" else args.cell
        torch.set_num_threads(1)  # tiny models: more threads only contend on a shared machine
    for key in ("hidden", "batch", "frame_size", "conv_batch", "steps", "block"):
        if getattr(args, key) < 1:
            ap.error(f"--{key.replace('_', '-')}={getattr(args, key)}: must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if cuda else "cpu")
    cells = {"auto": ["fc", "conv"] if cuda else ["fc"], "both": ["fc", "conv"]}.get(
        args.cell, [args.cell]
    )
    if "conv" in cells and args.frame_size % args.patch:
        ap.error(f"--frame-size={args.frame_size} is not a multiple of --patch={args.patch}")

    torch.manual_seed(0)
    precision = "bf16 autocast" if cuda else "fp32"
    contenders: list[Contender] = []
    sizes: dict[str, str] = {}
    for cell in cells:
        batch = args.batch if cell == "fc" else args.conv_batch
        clip = torch.rand(
            batch, args.context + args.horizon, 1, args.frame_size, args.frame_size, device=device
        )
        options = dict(
            frame_size=args.frame_size,
            context=args.context,
            horizon=args.horizon,
            cell=cell,
            hidden=args.hidden,
        )
        if cell == "fc":
            plain = PlainComposite(args.frame_size**2, args.hidden)
            sizes[cell] = f"hidden {args.hidden}, batch {batch}"
        else:
            options.update(
                layers=args.conv_layers,
                conv_channels=args.conv_channels,
                kernel=args.kernel,
                patch=args.patch,
            )
            plain = PlainConvComposite(
                1, args.patch, args.conv_channels, args.kernel, args.conv_layers
            )
            sizes[cell] = (
                f"{args.conv_layers}x{args.conv_channels} ch, {args.kernel}x{args.kernel}, "
                f"patch {args.patch}, batch {batch}"
            )
        plain.to(device)
        ref = f"{cell} reference"
        contenders.append(
            Contender(ref, "plain PyTorch, fp32", reference_step(plain, clip, args.context, False))
        )
        if cuda:
            contenders.append(
                Contender(
                    f"{cell} reference bf16",
                    "plain PyTorch, bf16 autocast",
                    reference_step(plain, clip, args.context, True),
                    ref,
                )
            )
        contenders.append(
            Contender(
                f"{cell} framecast",
                f"training_step + make_update, {precision}",
                framecast_step(options, clip, device, compiled=False),
                ref,
            )
        )
        if args.compile:
            contenders.append(
                Contender(
                    f"{cell} framecast compiled",
                    f"as above, trainer.compile=true, {precision}",
                    framecast_step(options, clip, device, compiled=True),
                    ref,
                )
            )

    name = device_name(device)
    print(f"train-step benchmark on {name}: " + "; ".join(f"{k}: {v}" for k, v in sizes.items()))
    run(contenders, device, args)

    frames = f"{args.frame_size}x{args.frame_size}, {args.context}+{args.horizon} frames"
    table = Table(f"train step, composite LSTM ({frames}) on {name}")
    for c in contenders:
        batch = args.batch if c.name.startswith("fc") else args.conv_batch
        table.add(c.name, batch * c.steps / c.seconds, "samples/s", c.reference)
    table.print()
    for c in contenders:
        print(f"  {c.name}: {c.what}; {c.steps} steps in {c.seconds:.2f} s")
    table.write(
        args.json,
        device=name,
        torch=torch.__version__,
        sizes=sizes,
        contenders={c.name: c.what for c in contenders},
        steps=args.steps,
        warmup=args.warmup,
        block=args.block,
        goals={"fc framecast": ">= 1.5x fc reference on the GPU (batch 256)"},
    )


if __name__ == "__main__":
    main()
