"""The reconstruct stage's handler and per-trial reconstruction, called directly (no sockets).

The queue, the worker thread and the backlog warnings run through sockets in
``tests/mindeye_models/test_recon.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from mindeye_models.recon_options import ReconOptions
from realtime.stages.reconstruct import ReconstructStage
from rt_base.errors import ConfigError, MessageError
from rt_wire.message import Message


class _Unused:
    """A reconstructor the handler never calls (it only queues)."""

    options = ReconOptions(mode="lowlevel")

    def __call__(self, *args):
        raise AssertionError("handle() must only queue a latent")


def _latent(index: int, tokens: np.ndarray, response: np.ndarray) -> Message:
    meta = {"image_id": 7, "rank": 3, "ways": 10}
    buffers = {"tokens": tokens, "response": response}
    return Message(
        "latent", run="run-01", index=index, meta=meta, t={"decode.done": 5.0}, buffers=buffers
    )


def test_latents_are_queued_in_order_and_everything_else_passes_at_once():
    stage = ReconstructStage(_Unused())
    retrieval = Message("retrieval", run="run-01", index=0, meta={"rank": 3})
    assert list(stage.handle(retrieval)) == [retrieval]
    first, second = (_latent(k, np.zeros((2, 3), "f4"), np.zeros(4, "f4")) for k in range(2))
    assert list(stage.handle(first)) == [] and list(stage.handle(second)) == []
    assert (first.meta["number"], second.meta["number"]) == (1, 2)  # the trials' seed offsets
    status = stage.status()
    assert status["backlog"] == 2 and status["behind_s"] > 0 and status["mode"] == "lowlevel"
    assert status["reconstructed"] == 0


@pytest.mark.parametrize(
    ("buffers", "match"),
    [
        ({"response": np.zeros(4, "f4")}, r"2-D 'tokens' buffer, got None"),
        ({"tokens": np.zeros(6, "f4"), "response": np.zeros(4, "f4")}, r"'tokens' .*got \(6,\)"),
        ({"tokens": np.zeros((2, 3), "f4")}, "1-D 'response' buffer, got None"),
    ],
)
def test_a_latent_without_its_buffers_is_a_bad_message(buffers, match):
    stage = ReconstructStage(_Unused())
    msg = Message("latent", run="run-01", index=4, buffers=buffers)
    with pytest.raises(MessageError, match=rf"latent of run 'run-01' trial 4 .*{match}"):
        stage.handle(msg)
    assert stage.status()["backlog"] == 0


def test_full_mode_without_a_generator_is_refused_before_loading(tmp_path):
    spec = {"bundle": str(tmp_path / "missing.safetensors"), "mode": "full"}
    with pytest.raises(ConfigError, match="'recon' full needs a generator: --generator DIR"):
        ReconstructStage.from_spec(spec)


def test_bad_recon_options_name_their_option(tmp_path):
    spec = {"bundle": str(tmp_path / "missing.safetensors"), "prior_steps": 0}
    with pytest.raises(ConfigError, match="'prior_steps'"):
        ReconstructStage.from_spec(spec)


def test_a_trial_is_reconstructed_from_its_latent(tiny_dataset, tiny_model, tiny_recon):
    from mindeye_models.checkpoint import read_sidecar

    config = read_sidecar(tiny_model)["config"]
    stage = ReconstructStage.from_spec({"bundle": str(tiny_recon), "mode": "lowlevel", "seed": 5})
    rng = np.random.default_rng(0)
    tokens = rng.normal(size=(config["n_tokens"], config["clip_dim"])).astype(np.float32)
    response = rng.normal(size=int(tiny_dataset.meta.n_voxels)).astype(np.float32)
    latent = _latent(3, tokens, response)
    assert list(stage.handle(latent)) == []
    recon = stage.reconstruct(latent)
    assert (recon.kind, recon.run, recon.index) == ("recon", "run-01", 3)
    image = recon.buffers["image"]
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3
    assert "blurry" not in recon.buffers  # in lowlevel mode the image is the blurry one
    meta = recon.meta
    assert meta["mode"] == "lowlevel" and meta["generator"] is None and meta["steps"] is None
    assert meta["seed"] == 5 + 1 and "number" not in meta
    assert meta["image_id"] == 7 and meta["compute_ms"] > 0 and "lowlevel" in meta["parts_ms"]
    assert recon.t["decode.done"] <= recon.t["reconstruct.started"] <= recon.t["reconstruct.done"]
    assert stage.status()["reconstructed"] == 1
    again = stage.reconstruct(latent)  # the same trial number draws the same image
    np.testing.assert_array_equal(again.buffers["image"], image)
