"""The decode stage's handler with a tiny random MindEye and a tiny bank (no sockets)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mindeye_models.bank import ImageBank
from mindeye_models.model import MindEye
from mindeye_models.presets import get_preset
from realtime.stages.decode import DecodeStage
from rt_base.errors import MessageError
from rt_wire.message import Message

N_VOXELS = 12
BANK_IDS = np.array([3, 5, 8, 13, 21, 34], np.int64)


@pytest.fixture(scope="module")
def model() -> MindEye:
    torch.manual_seed(0)
    return MindEye(get_preset("tiny", n_voxels=N_VOXELS)).eval()


def _response(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=N_VOXELS).astype(np.float32)


def _bank(model: MindEye, true_id: int, response: np.ndarray) -> ImageBank:
    """Random tokens, except that image ``true_id`` holds the model's own prediction."""
    cfg = model.config
    tokens = torch.randn(
        len(BANK_IDS), cfg.n_tokens, cfg.clip_dim, generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        tokens[list(BANK_IDS).index(true_id)] = model(torch.from_numpy(response)[None])[1][0]
    return ImageBank(BANK_IDS, tokens)


def _msg(response: np.ndarray, image_id: int) -> Message:
    meta = {"image_id": image_id, "onset": 2.0, "truncated": False}
    return Message("response", run="run-01", index=4, meta=meta, buffers={"response": response})


def test_a_response_becomes_a_ranked_retrieval(model):
    response = _response(0)
    stage = DecodeStage(model, _bank(model, 13, response), top_k=3)
    msg = _msg(response, 13)
    outs = list(stage.handle(msg))
    assert [m.kind for m in outs] == ["response", "retrieval"] and outs[0] is msg
    out = outs[1]
    assert (out.run, out.index) == ("run-01", 4)
    assert out.buffers["ids"].dtype == np.int64 and out.buffers["ids"].shape == (3,)
    assert out.buffers["ids"][0] == 13  # the bank image that is the prediction comes first
    scores = out.buffers["scores"]
    assert scores.dtype == np.float32 and np.all(np.diff(scores) <= 0)
    assert scores[0] == pytest.approx(1.0, abs=1e-5)
    assert out.buffers["embedding"].shape == (model.config.n_tokens, model.config.clip_dim)
    assert out.meta["rank"] == 1 and out.meta["in_bank"] and out.meta["ways"] == len(BANK_IDS)
    assert out.meta["onset"] == 2.0  # the trial's meta goes on
    status = stage.status()
    assert status["decoded"] == 1 and status["forward_ms"] > 0


def test_a_true_image_outside_the_bank_is_not_ranked(model):
    response = _response(1)
    stage = DecodeStage(model, _bank(model, 3, response))
    out = list(stage.handle(_msg(response, 999)))[1]
    assert out.meta["rank"] is None and out.meta["in_bank"] is False
    assert len(out.buffers["ids"]) == 5  # top_k


def test_latents_for_the_reconstruct_stage(model):
    response = _response(2)
    stage = DecodeStage(model, _bank(model, 5, response), emit_latents=True)
    outs = list(stage.handle(_msg(response, 5)))
    assert [m.kind for m in outs] == ["response", "retrieval", "latent"]
    latent = outs[2]
    assert latent.buffers["tokens"].shape == (model.config.n_tokens, model.config.clip_dim)
    np.testing.assert_array_equal(latent.buffers["response"], response)
    assert latent.meta["rank"] == 1 and latent.index == 4


def test_other_kinds_pass_untouched(model):
    stage = DecodeStage(model, _bank(model, 5, _response(3)))
    msg = Message("trial", run="run-01", index=1, meta={"onset": 1.0})
    assert list(stage.handle(msg)) == [msg]
    assert stage.status()["decoded"] == 0


@pytest.mark.parametrize(
    ("buffers", "got"),
    [({}, "got None"), ({"response": np.zeros(N_VOXELS + 1, np.float32)}, r"got \(13,\)")],
)
def test_a_response_that_does_not_fit_the_model_is_a_bad_message(model, buffers, got):
    stage = DecodeStage(model, _bank(model, 5, _response(4)))
    msg = Message("response", run="run-01", index=7, buffers=buffers)
    with pytest.raises(MessageError, match=rf"run 'run-01' trial 7 .*shape \(12,\).*{got}"):
        stage.handle(msg)


def test_int8_decoding_ranks_the_prediction_first_and_says_so(model):
    response = _response(3)
    stage = DecodeStage(model, _bank(model, 21, response), top_k=2, precision="int8")
    out = list(stage.handle(_msg(response, 21)))[1]
    assert out.buffers["ids"][0] == 21 and out.meta["rank"] == 1
    assert stage.status()["precision"] == "int8"
    assert stage.model is not model  # a quantised copy; the caller's model is left alone
