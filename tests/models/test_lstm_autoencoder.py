"""The composite LSTM autoencoder: shapes, targets, teacher forcing, attention, streaming,
and that a few Adam steps lower the loss. Tiny sizes (16×16 frames, 32 units) for CPU speed."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models import build_task
from models.lstm_autoencoder import (
    CompositeLSTM,
    LSTMAutoencoderConfig,
    LSTMAutoencoderTask,
    reconstruction_target,
)

CONTEXT, HORIZON, SIZE = 4, 3, 16
TINY = dict(frame_size=SIZE, context=CONTEXT, horizon=HORIZON, hidden=32, conv_channels=8)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(**overrides) -> LSTMAutoencoderConfig:
    return LSTMAutoencoderConfig(**{**TINY, **overrides})


def tiny_model(seed: int = 0, **overrides) -> CompositeLSTM:
    torch.manual_seed(seed)
    return CompositeLSTM(tiny_config(**overrides))


def moving_squares(batch: int, steps: int, seed: int = 0) -> torch.Tensor:
    """(batch, steps, 1, 16, 16): a 4×4 white square moving one pixel per frame, bouncing."""
    gen = torch.Generator().manual_seed(seed)
    clips = torch.zeros(batch, steps, 1, SIZE, SIZE)
    for b in range(batch):
        y, x = torch.randint(0, SIZE - 4, (2,), generator=gen).tolist()
        dy, dx = [1 if v else -1 for v in torch.randint(0, 2, (2,), generator=gen).tolist()]
        for t in range(steps):
            clips[b, t, 0, y : y + 4, x : x + 4] = 1.0
            if not 0 <= y + dy <= SIZE - 4:
                dy = -dy
            if not 0 <= x + dx <= SIZE - 4:
                dx = -dx
            y, x = y + dy, x + dx
    return clips


def trainer_update(optimizers: dict[str, torch.optim.Optimizer], calls: list | None = None):
    """What the generic trainer does in update(loss, name): zero, backward, clip, step."""

    def update(loss: torch.Tensor, name: str) -> None:
        if calls is not None:
            calls.append(name)
        optimizer = optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()

    return update


def train(task: LSTMAutoencoderTask, batch: torch.Tensor, steps: int) -> list[float]:
    update = trainer_update(task.make_optimizers())
    return [task.training_step(batch, step, update)["loss"] for step in range(steps)]


# ---------------------------------------------------------------------------------------------
# Shapes


@pytest.mark.parametrize("cell", ["fc", "conv"])
@pytest.mark.parametrize("decoders", ["composite", "reconstruct", "predict"])
def test_output_shapes(cell, decoders):
    model = tiny_model(cell=cell, decoders=decoders, channels=2)
    observed = torch.rand(2, CONTEXT, 2, SIZE, SIZE)
    future = torch.rand(2, HORIZON, 2, SIZE, SIZE)
    outputs = model(observed, future)
    predicted = {"prediction", "prediction_frames"}  # raw outputs, and as frames in [0, 1]
    expected = {"composite": {"reconstruction", *predicted}, "reconstruct": {"reconstruction"},
                "predict": predicted}[decoders]  # fmt: skip
    assert set(outputs) == expected
    if "reconstruction" in outputs:
        assert outputs["reconstruction"].shape == observed.shape
    if "prediction" in outputs:
        assert outputs["prediction"].shape == future.shape
        frames = model.predict(observed, 2 * HORIZON + 1)  # longer than the trained horizon
        assert frames.shape == (2, 2 * HORIZON + 1, 2, SIZE, SIZE)
        assert 0.0 <= frames.min() and frames.max() <= 1.0
    else:
        with pytest.raises(ValueError, match="predictor"):
            model.predict(observed, HORIZON)


@pytest.mark.parametrize("cell", ["fc", "conv"])
@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("attention", [False, True])
def test_variants_run_with_several_layers(cell, conditional, attention):
    model = tiny_model(cell=cell, conditional=conditional, attention=attention, layers=2)
    observed = torch.rand(2, CONTEXT, 1, SIZE, SIZE)
    outputs = model(observed, horizon=HORIZON + 2)  # no future given: free-running predictor
    assert outputs["prediction"].shape == (2, HORIZON + 2, 1, SIZE, SIZE)
    long = model.predict(observed, 2 * HORIZON)
    # rolling further does not change the first frames
    assert torch.allclose(long[:, :HORIZON], model.predict(observed, HORIZON), atol=1e-6)


# ---------------------------------------------------------------------------------------------
# The reconstruction target is the observed clip reversed


def test_reconstruction_target_is_reversed():
    observed = torch.rand(2, CONTEXT, 1, SIZE, SIZE)
    target = reconstruction_target(observed)
    for t in range(CONTEXT):
        assert torch.equal(target[:, t], observed[:, CONTEXT - 1 - t])


class PerfectReconstruction(nn.Module):
    """A stand-in model whose outputs are exactly what `reverse` says (values, loss="mse")."""

    def __init__(self, reverse: bool) -> None:
        super().__init__()
        self.reverse = reverse
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, observed, future, sampling_prob=0.0):
        reconstruction = observed.flip(1) if self.reverse else observed
        return {"reconstruction": reconstruction + self.weight, "prediction": future + self.weight}


@pytest.mark.parametrize("reverse", [True, False])
def test_task_compares_reconstruction_with_reversed_input(reverse):
    task = LSTMAutoencoderTask(**TINY, loss="mse")
    task.networks["model"] = PerfectReconstruction(reverse)
    calls = []
    batch = moving_squares(2, CONTEXT + HORIZON)
    logs = task.training_step(batch, 0, trainer_update(task.make_optimizers(), calls))
    assert calls == ["model"]  # update called once, for the one optimiser
    assert logs["prediction_loss"] == pytest.approx(0.0)
    if reverse:
        assert logs["reconstruction_loss"] == pytest.approx(0.0)
    else:
        assert logs["reconstruction_loss"] > 1.0  # a moving square is not its own reverse


def test_logged_losses_are_per_frame_sums():
    task = LSTMAutoencoderTask(**TINY, loss="mse")
    task.networks["model"] = PerfectReconstruction(reverse=True)
    task.networks["model"].weight.data.fill_(0.5)  # every pixel off by 0.5
    logs = task.training_step(moving_squares(2, 7), 0, trainer_update(task.make_optimizers()))
    assert logs["prediction_loss"] == pytest.approx(0.25 * SIZE * SIZE)
    assert logs["loss"] == pytest.approx(2 * 0.25)  # the optimised loss is the per-pixel mean


# ---------------------------------------------------------------------------------------------
# Conditional decoders: the truth while training, their own output at inference


def record_decoder(decoder):
    """Record the inputs of a decoder's LSTM and the outputs of its readout."""
    inputs, outputs = [], []
    decoder.lstm.register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
    decoder.readout.register_forward_hook(lambda module, args, out: outputs.append(out))
    return inputs, outputs


@pytest.mark.parametrize("cell", ["fc", "conv"])
@pytest.mark.parametrize("attention", [False, True])
def test_conditional_decoders_get_truth_in_training(cell, attention):
    model = tiny_model(cell=cell, conditional=True, attention=attention)
    pred_inputs, _ = record_decoder(model.predictor)
    rec_inputs, _ = record_decoder(model.reconstructor)
    clip = moving_squares(2, CONTEXT + HORIZON)
    observed, future = clip[:, :CONTEXT], clip[:, CONTEXT:]
    model(observed, future)

    frame_features = model.frame_features
    channel = model.channel_dim
    fed = torch.cat(pred_inputs, dim=1).narrow(channel, 0, frame_features)  # (B, K, *F)
    expected = torch.cat([observed[:, -1:], future[:, :-1]], dim=1)  # y_0 = last observed
    assert torch.equal(fed, model.embed(expected))

    fed = torch.cat(rec_inputs, dim=1).narrow(channel, 0, frame_features)
    reversed_clip = reconstruction_target(observed)
    expected = torch.cat([torch.zeros_like(observed[:, :1]), reversed_clip[:, :-1]], dim=1)
    assert torch.equal(fed, model.embed(expected))


@pytest.mark.parametrize("cell", ["fc", "conv"])
def test_conditional_decoder_feeds_own_output_at_inference(cell):
    model = tiny_model(cell=cell, conditional=True)
    inputs, outputs = record_decoder(model.predictor)
    observed = moving_squares(2, CONTEXT)
    model.predict(observed, HORIZON)
    assert len(inputs) == HORIZON  # one step at a time
    assert torch.equal(inputs[0][:, 0], model.embed(observed[:, -1]))
    for k in range(1, HORIZON):
        own_frame = torch.sigmoid(outputs[k - 1])  # loss="bce": outputs are logits
        assert torch.allclose(inputs[k][:, 0], own_frame)


def test_scheduled_sampling_extremes_and_ramp():
    model = tiny_model(conditional=True)
    clip = moving_squares(2, CONTEXT + HORIZON)
    observed, future = clip[:, :CONTEXT], clip[:, CONTEXT:]
    free = model(observed, future, teacher_forcing=False)
    always_own = model(observed, future, sampling_prob=1.0)
    forced = model(observed, future)
    for key in ("reconstruction", "prediction"):
        assert torch.allclose(always_own[key], free[key], atol=1e-6)
        assert not torch.allclose(forced[key], free[key], atol=1e-4)

    task = LSTMAutoencoderTask(**TINY, conditional=True, scheduled_sampling=0.5,
                               sampling_ramp_steps=100)  # fmt: skip
    assert task.sampling_prob(0) == 0.0
    assert task.sampling_prob(50) == pytest.approx(0.25)
    assert task.sampling_prob(1000) == pytest.approx(0.5)
    logs = task.training_step(clip, 50, trainer_update(task.make_optimizers()))
    assert logs["sampling_prob"] == pytest.approx(0.25)


# ---------------------------------------------------------------------------------------------
# Attention


def alter_early_encoder_states(model: CompositeLSTM) -> None:
    """Make the encoder report different per-step states before the last one, while its final
    state (what the decoders start from) stays the same."""

    def hook(module, args, output):
        memory, final_state = output
        memory = torch.cat([memory[:, :-1] + 1.0, memory[:, -1:]], dim=1)
        return memory, final_state

    model.encoder.register_forward_hook(hook)


@pytest.mark.parametrize("cell", ["fc", "conv"])
@pytest.mark.parametrize("attention", [False, True])
def test_attention_reads_every_encoder_state(cell, attention):
    model = tiny_model(cell=cell, attention=attention)
    observed = torch.rand(2, CONTEXT, 1, SIZE, SIZE)
    before = model(observed)
    alter_early_encoder_states(model)
    after = model(observed)
    for key in ("reconstruction", "prediction"):
        changed = not torch.allclose(before[key], after[key], atol=1e-5)
        assert changed == attention, key  # without attention only the final state matters


def test_attention_trains():
    task = LSTMAutoencoderTask(**TINY, attention=True, conditional=True, lr=3e-3)
    losses = train(task, moving_squares(4, CONTEXT + HORIZON), steps=25)
    assert losses[-1] < 0.7 * losses[0]


# ---------------------------------------------------------------------------------------------
# Training lowers the loss


@pytest.mark.parametrize(
    "options",
    [
        dict(cell="fc"),
        dict(cell="fc", conditional=True, layers=2),
        dict(cell="conv"),
        dict(cell="conv", loss="mse", decoders="predict"),
    ],  # fmt: skip
    ids=["fc", "fc-conditional-2layers", "conv", "conv-mse-predict"],
)
def test_a_few_adam_steps_lower_the_loss(options):
    torch.manual_seed(0)
    task = build_task("lstm_autoencoder", **TINY, lr=3e-3, **options)
    losses = train(task, moving_squares(4, CONTEXT + HORIZON), steps=25)
    assert all(map(torch.isfinite, torch.tensor(losses)))
    assert losses[-1] < 0.7 * losses[0], losses


# ---------------------------------------------------------------------------------------------
# Streaming


@pytest.mark.parametrize("cell", ["fc", "conv"])
@pytest.mark.parametrize("options", [{}, dict(conditional=True, attention=True, layers=2)])
def test_stream_matches_batch_predict(cell, options):
    model = tiny_model(cell=cell, **options)
    observed = moving_squares(2, CONTEXT)
    stream = model.stream(batch_size=2)
    for t in range(CONTEXT):
        stream.step(observed[:, t])
    expected = model.predict(observed, 2 * HORIZON)
    assert torch.allclose(stream.predict(2 * HORIZON), expected, atol=1e-5)
    assert torch.allclose(stream.predict(2 * HORIZON), expected, atol=1e-5)  # state unchanged


@pytest.mark.parametrize("cell", ["fc", "conv"])
@pytest.mark.parametrize("options", [{}, dict(attention=True, layers=2)])
def test_merged_streams_step_as_each_alone(cell, options):
    """Cross-session batching: merge -> step -> split equals stepping each stream alone."""
    model = tiny_model(cell=cell, **options)
    clips = moving_squares(3, CONTEXT + 2)
    alone = [model.stream() for _ in range(3)]
    batched = [model.stream() for _ in range(3)]
    for t in range(CONTEXT):
        for i in range(3):
            alone[i].step(clips[i : i + 1, t])
            batched[i].step(clips[i : i + 1, t])
    assert len({s.batch_key() for s in batched}) == 1
    assert model.stream().batch_key() != batched[0].batch_key()  # fresh vs started
    for t in range(CONTEXT, CONTEXT + 2):
        merged = type(batched[0]).merge(batched)
        merged.step(clips[:, t])
        both = merged.predict(HORIZON)
        batched = merged.split()
        for i in range(3):
            alone[i].step(clips[i : i + 1, t])
            assert torch.allclose(both[i : i + 1], alone[i].predict(HORIZON), atol=1e-5)
    for i in range(3):
        assert batched[i].frames_seen == alone[i].frames_seen == CONTEXT + 2
        assert batched[i].batch_size == 1 and len(batched[i].memory) == len(alone[i].memory)
        assert torch.allclose(batched[i].predict(HORIZON), alone[i].predict(HORIZON), atol=1e-5)
    fresh = type(batched[0]).merge([model.stream(), model.stream()])  # a first frame, batched
    fresh.step(clips[:2, 0])
    one = model.stream()
    one.step(clips[:1, 0])
    assert torch.allclose(fresh.split()[0].predict(2), one.predict(2), atol=1e-5)


def test_stream_keeps_a_bounded_attention_memory():
    model = tiny_model(attention=True)
    clip = moving_squares(1, 3 * CONTEXT)
    stream = model.stream()
    for t in range(clip.shape[1]):
        stream.step(clip[:, t])
    assert len(stream.memory) == CONTEXT
    assert stream.predict(HORIZON).shape == (1, HORIZON, 1, SIZE, SIZE)
    with pytest.raises(ValueError, match="batch"):
        stream.step(clip[:, 0].expand(2, -1, -1, -1))
    with pytest.raises(RuntimeError):
        model.stream().predict(1)


# ---------------------------------------------------------------------------------------------
# The task's contract with the trainer


def test_task_contract():
    task = build_task("lstm_autoencoder", **TINY)
    assert task.clip_length == CONTEXT + HORIZON
    assert set(task.networks) == {"model"}
    assert set(task.make_optimizers()) == {"model"}
    assert isinstance(task.inference_model(), CompositeLSTM)
    config = task.config()
    assert config == dataclasses.asdict(tiny_config())
    rebuilt = build_task(**config)  # checkpoints rebuild from config()
    assert rebuilt.config() == config
    logs = task.training_step(moving_squares(2, CONTEXT + HORIZON), 0,
                              trainer_update(task.make_optimizers()))  # fmt: skip
    assert set(logs) == {"loss", "reconstruction_loss", "prediction_loss"}
    assert all(isinstance(v, float) for v in logs.values())


def test_unknown_and_invalid_options():
    with pytest.raises(TypeError, match="hiden"):
        LSTMAutoencoderTask(hiden=32)
    with pytest.raises(ValueError, match="cell"):
        LSTMAutoencoderTask(cell="gru")
    with pytest.raises(ValueError, match="patch"):
        LSTMAutoencoderTask(cell="conv", frame_size=18, patch=4)


def test_mse_outputs_are_clamped_frames():
    model = tiny_model(loss="mse")
    with torch.no_grad():
        model.predictor.readout.bias.fill_(5.0)
    frames = model.predict(torch.rand(1, CONTEXT, 1, SIZE, SIZE), 2)
    assert torch.equal(frames, torch.ones_like(frames))
    # the raw forward output is the regressed value, unclamped
    assert model(torch.rand(1, CONTEXT, 1, SIZE, SIZE))["prediction"].max() > 1.0
    assert F.mse_loss(model.to_frame(torch.tensor([2.0])), torch.tensor([1.0])) == 0.0


# ---------------------------------------------------------------------------------------------
# The paper's options: one conditional decoder, peepholes, the official update, summed loss


@pytest.mark.parametrize(
    ("conditional", "reconstruct", "predict"),
    [(False, False, False), (True, True, True), ("predict", False, True),
     ("reconstruct", True, False)],
)  # fmt: skip
def test_conditional_picks_each_decoder(conditional, reconstruct, predict):
    model = tiny_model(conditional=conditional)
    assert model.reconstructor.conditional is reconstruct
    assert model.predictor.conditional is predict
    pixels = SIZE * SIZE
    # a conditional decoder reads a frame, an unconditional one a single zero
    assert model.reconstructor.lstm.input_size == (pixels if reconstruct else 1)
    assert model.predictor.lstm.input_size == (pixels if predict else 1)


def test_one_conditional_decoder_predicts_as_the_old_flags_did():
    """conditional="predict" has the future predictor of the old conditional=True and
    "reconstruct" the one of conditional=False: their weights give the same predictions."""
    observed = moving_squares(2, CONTEXT)
    for old, new in ((True, "predict"), (False, "reconstruct")):
        before, after = tiny_model(conditional=old), tiny_model(seed=1, conditional=new)
        shared = {k: v for k, v in before.state_dict().items() if not k.startswith("reconstructor")}
        after.load_state_dict(shared, strict=False)
        assert torch.equal(after.predict(observed, HORIZON), before.predict(observed, HORIZON))


def test_a_checkpoint_config_without_the_new_keys_builds_the_same_model():
    """Old checkpoints store conditional: true/false and none of the paper's keys: they build
    the model they were trained as and predict the same."""
    new_keys = {"peephole", "optimizer", "momentum", "step_clip", "reduction", "init_range"}
    for conditional in (False, True):
        task = build_task("lstm_autoencoder", **TINY, conditional=conditional)
        old = {k: v for k, v in task.config().items() if k not in new_keys}
        again = build_task(**old)
        assert again.config() == task.config()
        again.networks.load_state_dict(task.networks.state_dict())  # same parameters
        observed = moving_squares(2, CONTEXT)
        want = task.inference_model().predict(observed, HORIZON)
        assert torch.equal(again.inference_model().predict(observed, HORIZON), want)


def test_bad_conditional_and_peephole_options_are_named():
    with pytest.raises(ValueError, match="model.conditional='both'"):
        tiny_config(conditional="both")
    with pytest.raises(ValueError, match="model.peephole.*cell=fc"):
        tiny_config(peephole=True, cell="conv")
    with pytest.raises(ValueError, match="model.optimizer='rmsprop'"):
        tiny_config(optimizer="rmsprop")
    with pytest.raises(ValueError, match="model.reduction"):
        tiny_config(reduction="max")


def test_peephole_lstm_without_peepholes_is_nn_lstm():
    """With its peephole weights at zero, PeepholeLSTM computes nn.LSTM exactly: the same
    gates in the same order; the peepholes then change the result."""
    from models.lstm_autoencoder import PeepholeLSTM

    torch.manual_seed(0)
    ref = nn.LSTM(5, 7, 2, batch_first=True)
    ours = PeepholeLSTM(5, 7, 2)
    with torch.no_grad():
        for layer in range(2):
            ours.weight_ih[layer].copy_(getattr(ref, f"weight_ih_l{layer}"))
            ours.weight_hh[layer].copy_(getattr(ref, f"weight_hh_l{layer}"))
            bias = getattr(ref, f"bias_ih_l{layer}") + getattr(ref, f"bias_hh_l{layer}")
            ours.bias[layer].copy_(bias)
            ours.peephole[layer].zero_()
    x = torch.randn(3, 6, 5)
    state = (torch.randn(2, 3, 7), torch.randn(2, 3, 7))
    out, (h, c) = ours(x, state)
    want, (h_ref, c_ref) = ref(x, state)
    assert torch.allclose(out, want, atol=1e-6)
    assert torch.allclose(h, h_ref, atol=1e-6) and torch.allclose(c, c_ref, atol=1e-6)
    with torch.no_grad():
        ours.peephole[0].fill_(0.5)
    assert not torch.allclose(ours(x, state)[0], want, atol=1e-3)


def test_peephole_model_trains_and_streams():
    task = build_task("lstm_autoencoder", **TINY, peephole=True, layers=2, lr=3e-3)
    model = task.networks["model"]
    assert type(model.encoder).__name__ == "PeepholeLSTM"
    assert type(model.predictor.lstm).__name__ == "PeepholeLSTM"
    losses = train(task, moving_squares(4, CONTEXT + HORIZON), steps=25)
    assert losses[-1] < 0.7 * losses[0], losses
    assert all(p.grad is not None for n, p in model.named_parameters() if "peephole" in n)
    observed = moving_squares(2, CONTEXT)
    stream = model.stream(batch_size=2)
    for t in range(CONTEXT):
        stream.step(observed[:, t])
    assert torch.allclose(stream.predict(HORIZON), model.predict(observed, HORIZON), atol=1e-5)


def test_clipped_momentum_sgd_is_the_official_update():
    """v <- mu v - lr (g + decay w), clipped per element; w <- w + v."""
    from models.lstm_autoencoder import ClippedMomentumSGD

    w = nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    opt = ClippedMomentumSGD([w], lr=0.1, momentum=0.5, weight_decay=0.1, step_clip=0.2)
    w.grad = torch.tensor([1.0, -0.5, 0.0])
    opt.step()
    v1 = -0.1 * (torch.tensor([1.0, -0.5, 0.0]) + 0.1 * torch.tensor([1.0, -2.0, 0.5]))
    v1 = v1.clamp(-0.2, 0.2)
    assert torch.allclose(w.detach(), torch.tensor([1.0, -2.0, 0.5]) + v1)
    w0 = w.detach().clone()
    w.grad = torch.tensor([10.0, 0.0, 0.0])  # a huge gradient still moves w by 0.2 at most
    opt.step()
    v2 = (0.5 * v1 - 0.1 * (w.grad + 0.1 * w0)).clamp(-0.2, 0.2)
    assert torch.allclose(w.detach(), w0 + v2)
    assert v2[0] == -0.2


def test_sgd_leaves_the_biases_undecayed():
    task = build_task("lstm_autoencoder", **TINY, optimizer="sgd", weight_decay=0.5)
    decayed, plain = task.make_optimizers()["model"].param_groups
    names = {id(p): n for n, p in task.networks["model"].named_parameters()}
    assert decayed["weight_decay"] == 0.5 and plain["weight_decay"] == 0.0
    assert all("bias" in names[id(p)] for p in plain["params"])
    assert not any("bias" in names[id(p)] for p in decayed["params"])


def test_sum_reduction_is_the_mean_times_the_values():
    torch.manual_seed(0)
    clips = moving_squares(3, CONTEXT + HORIZON)
    observed, future = clips[:, :CONTEXT], clips[:, CONTEXT:]
    mean_task = build_task("lstm_autoencoder", **TINY, reconstruct_weight=0.5)
    sum_task = build_task("lstm_autoencoder", **TINY, reconstruct_weight=0.5, reduction="sum")
    sum_task.networks.load_state_dict(mean_task.networks.state_dict())
    outputs = mean_task.networks["model"](observed, future)
    mean, summed = (
        mean_task.losses(outputs, observed, future),
        sum_task.losses(outputs, observed, future),
    )
    want = 0.5 * mean["reconstruction"] * observed.numel() + mean["prediction"] * future.numel()
    assert torch.allclose(summed["loss"], want)
    assert torch.equal(summed["prediction"], mean["prediction"])  # the logged per-pixel terms


def test_init_range_is_the_official_uniform_initialisation():
    model = tiny_model(init_range=0.01, peephole=True, conditional="predict")
    for name, p in model.named_parameters():
        if "peephole" in name:
            assert p.abs().max() <= 0.1
        elif "bias" in name:
            assert torch.all(p == 0), name
        else:
            assert p.abs().max() <= 0.01 and p.abs().max() > 0.005, name


def test_the_paper_config_trains_with_the_official_update():
    """configs/model/lstm_autoencoder_paper.yaml at tiny sizes: momentum SGD on the summed loss,
    steps clipped per element, two peephole layers, a conditional predictor only."""
    from pipeline.core.config import compose, to_plain

    options = to_plain(compose("train", ["model=lstm_autoencoder_paper"]).model)
    assert (options["layers"], options["conditional"], options["optimizer"]) == (
        2,
        "predict",
        "sgd",
    )
    torch.manual_seed(0)
    task = build_task(**{**options, **TINY, "step_clip": 1e-3})
    model = task.networks["model"]
    assert model.predictor.conditional and not model.reconstructor.conditional
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizers = task.make_optimizers()

    def update(loss: torch.Tensor, name: str) -> None:  # no norm clipping: the paper's trainer
        optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        optimizers[name].step()

    clips = moving_squares(4, CONTEXT + HORIZON)
    losses = [task.training_step(clips, step, update)["loss"] for step in range(30)]
    # small, steady steps: every weight moves by at most step_clip per step
    assert losses[-1] < 0.99 * losses[0], losses
    assert sum(b < a for a, b in zip(losses, losses[1:])) >= 25, losses
    moved = max((p.detach() - before[n]).abs().max().item() for n, p in model.named_parameters())
    assert moved <= 30 * 1e-3 + 1e-6  # each step moves a weight by step_clip at most


def test_config_yaml_documents_exactly_the_dataclass_defaults():
    """configs/model/lstm_autoencoder.yaml has every option, at the dataclass default (the
    family's other configs compose it and change only what they say)."""
    from pipeline.core.config import compose, to_plain

    composed = to_plain(compose("train", ["model=lstm_autoencoder"]).model)
    assert composed == dataclasses.asdict(LSTMAutoencoderConfig())
