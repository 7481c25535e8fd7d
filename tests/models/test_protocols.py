"""Every registered family keeps the promise of its registry line: its inference model
implements the protocol of its kind (models/protocols.py), the only interface stages use."""

from __future__ import annotations

import pytest
import torch

from models import FAMILIES, build_task, families_of, kind_of
from models.protocols import (
    KINDS,
    PROTOCOLS,
    Classifier,
    Generator,
    MotionPredictor,
    Predictor,
    StreamSession,
    StructurePredictor,
    code_ids,
)

pytestmark = pytest.mark.usefixtures("one_thread")

# the smallest options of each family (frame 16 px)
TINY: dict[str, dict] = {
    "lstm_autoencoder": {"frame_size": 16, "hidden": 16, "context": 3, "horizon": 2},
    "hierarchical": {
        "frame_size": 16,
        "context": 3,
        "horizon": 2,
        "pose_embed": 8,
        "pose_hidden": 16,
        "gen_channels": 8,
        "detector_channels": 4,
        "disc_channels": 4,
    },
    "transformer_predictor": {
        "frame_size": 16,
        "patch": 4,
        "dim": 16,
        "heads": 2,
        "blocks": 2,
        "field_patch": 2,
        "window": 4,
        "context": 3,
        "horizon": 2,
    },
    "mocogan": {
        "frame_size": 16,
        "length": 4,
        "dim_content": 6,
        "dim_motion": 4,
        "dim_noise": 3,
        "gen_channels": 8,
        "disc_channels": 8,
    },
    "video_classifier": {"frame_size": 16, "length": 4, "num_categories": 2, "width": 4},
}


def test_every_family_has_tiny_options_here() -> None:
    """A new family adds its smallest options to TINY (and nothing else to this file)."""
    assert set(TINY) == set(FAMILIES)
    assert {kind_of(name) for name in FAMILIES} <= set(KINDS)
    assert all(families_of(kind) for kind in KINDS)  # each kind has a family to check


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_inference_model_implements_its_kinds_protocol(name: str) -> None:
    torch.manual_seed(0)
    task = build_task(name, **TINY[name])
    options = task.config()
    size, channels = options["frame_size"], options["channels"]
    model = task.inference_model().eval()
    kind = kind_of(name)
    assert isinstance(model, PROTOCOLS[kind])
    for other in KINDS:
        if other != kind:
            assert not isinstance(model, PROTOCOLS[other]), f"{name} is also a {other}"
    if isinstance(model, Predictor):
        observed = torch.rand(2, 3, channels, size, size)
        future = model.predict(observed, 4)
        assert future.shape == (2, 4, channels, size, size)
        session = model.stream(2)
        assert isinstance(session, StreamSession)
        for t in range(3):
            session.step(observed[:, t])
        assert session.frames_seen == 3
        torch.testing.assert_close(session.predict(4), future, atol=1e-5, rtol=0)
        a, b = model.stream(1), model.stream(1)
        for t in range(3):
            a.step(observed[:1, t])
            b.step(observed[1:, t])
        assert a.batch_key() == b.batch_key()
        both = type(a).merge([a, b])
        torch.testing.assert_close(both.predict(4), future, atol=1e-5, rtol=0)
        assert [s.batch_size for s in both.split()] == [1, 1]
    if isinstance(model, Generator):
        videos = model.sample(3, 5, seed=7)
        assert videos.shape == (3, 5, channels, size, size)
        torch.testing.assert_close(model.sample(1, 5, seed=7, start=2)[0], videos[2])
        drawn = model.drawn_categories(7, [0, 1])
        if model.num_categories == 0:
            assert drawn is None
        else:
            assert drawn is not None and all(0 <= c < model.num_categories for c in drawn)
    if isinstance(model, Classifier):
        clips = torch.rand(2, 4, channels, size, size)
        assert model(clips).shape == (2, options["num_categories"])
        assert model.features(clips).shape[0] == 2
        assert model.frame_features(clips).shape[:2] == (2, 4)


def test_optional_protocols_are_where_the_families_offer_them() -> None:
    lstm = build_task("lstm_autoencoder", **TINY["lstm_autoencoder"]).inference_model()
    hier = build_task("hierarchical", **TINY["hierarchical"]).inference_model()
    assert isinstance(lstm, MotionPredictor) and not isinstance(lstm, StructurePredictor)
    assert isinstance(hier, StructurePredictor)


def test_code_ids_fix_content_or_motion() -> None:
    assert [code_ids(i, None) for i in range(3)] == [(0, 0), (1, 1), (2, 2)]
    assert [code_ids(i, "content") for i in range(3)] == [(0, 0), (0, 1), (0, 2)]
    assert [code_ids(i, "motion") for i in range(3)] == [(0, 0), (1, 0), (2, 0)]
