"""The per-trial Reconstructor (lowlevel and full mode, its output, the parts it needs), the
generator loader, and the reconstruct stage running a Reconstructor through its sockets."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
import zmq

from mindeye_models.recon_bundle import ReconBundle, load_bundle
from mindeye_models.recon_options import ReconOptions
from mindeye_models.reconstructor import ReconstructionOutput, Reconstructor, load_generator
from realtime.stages.reconstruct import ReconstructStage
from rt_base.errors import ConfigError, WeightsError
from rt_wire import transport
from rt_wire.message import Message


def _trial_inputs(dataset, checkpoint, n=1):
    from mindeye_models.checkpoint import load_checkpoint

    model, _ = load_checkpoint(checkpoint)
    responses, ids = dataset.training_responses()
    with torch.no_grad():
        tokens = model(torch.from_numpy(responses[:n]))[0].numpy()
    return tokens, responses[:n], ids[:n]


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"mode": "sharp"}, "'recon'"),
        ({"steps": 0}, "'recon_steps'"),
        ({"strength": 0}, "'recon_strength'"),
        ({"strength": 1.5}, "'recon_strength'"),
        ({"prior_steps": 101}, "'prior_steps'"),
        ({"dtype": "float16"}, "needs a CUDA device"),
        ({"dtype": "int8"}, "'recon_dtype'"),
        ({"device": "gpu"}, "'recon_device'"),
    ],
)
def test_recon_options_reject_bad_values(changes, match):
    with pytest.raises(ConfigError, match=match):
        ReconOptions(**changes)


def test_full_mode_needs_a_generator_and_a_prior(tiny_recon, tmp_path):
    bundle = load_bundle(tiny_recon)
    with pytest.raises(ConfigError, match="needs a generator"):
        Reconstructor(bundle, ReconOptions(mode="full"))
    lowlevel_only = ReconBundle(
        bundle.token_shape, head=bundle.head, autoencoder=bundle.autoencoder
    )
    pipe = load_generator("tiny-random", embed_dim=128, device="cpu", dtype="float32")
    with pytest.raises(WeightsError, match="holds no diffusion prior .*'full' needs it"):
        Reconstructor(lowlevel_only, ReconOptions(mode="full"), pipe)
    Reconstructor(lowlevel_only, ReconOptions(mode="lowlevel"))  # all a lowlevel session needs
    prior_only = ReconBundle(bundle.token_shape, prior=bundle.prior)
    with pytest.raises(WeightsError, match="holds no low-level head and autoencoder"):
        Reconstructor(prior_only, ReconOptions(mode="lowlevel"))


def test_the_generator_must_take_the_priors_embeddings(tmp_path, monkeypatch):
    from mindeye_models import reconstructor, unclip_pipeline

    # a tiny pipeline conditioned on 64-d embeddings cannot take the prior's 128-d ones
    pipe = unclip_pipeline.build_tiny_unclip_pipeline(embed_dim=64)
    monkeypatch.setattr(reconstructor, "build_tiny_unclip_pipeline", lambda **kw: pipe)
    with pytest.raises(WeightsError, match="takes 64-d image embeddings"):
        load_generator("tiny-random", embed_dim=128, device="cpu", dtype="float32")
    with pytest.raises(WeightsError, match="does not exist"):
        load_generator(str(tmp_path / "no-snapshot"), embed_dim=128, device="cpu", dtype="float32")


def test_reconstructor_is_reproducible_per_trial(tiny_dataset, tiny_model, tiny_recon):
    tokens, responses, _ = _trial_inputs(tiny_dataset, tiny_model, 1)
    bundle = load_bundle(tiny_recon)
    pipe = load_generator("tiny-random", embed_dim=128, device="cpu", dtype="float32")
    rec = Reconstructor(bundle, ReconOptions(mode="full", steps=2, prior_steps=3), pipe)
    a, b, c = (
        rec(tokens[0], responses[0], 5),
        rec(tokens[0], responses[0], 5),
        rec(tokens[0], responses[0], 6),
    )
    assert isinstance(a, ReconstructionOutput)
    assert a.image.shape == (64, 64, 3) and a.image.dtype == np.uint8
    assert a.blurry.shape == (32, 32, 3) and a.blurry.dtype == np.uint8
    assert np.array_equal(a.image, b.image)  # same trial number, same seed
    assert not np.array_equal(a.image, c.image)  # the next trial draws new noise
    assert np.array_equal(a.blurry, c.blurry)  # the blurry image is deterministic
    assert set(a.timings_ms) == {"lowlevel", "prior", "generator"}
    assert all(ms > 0 for ms in a.timings_ms.values())
    low = Reconstructor(bundle, ReconOptions(mode="lowlevel"))(tokens[0], responses[0], 1)
    assert np.array_equal(low.image, a.blurry) and low.blurry is None
    assert set(low.timings_ms) == {"lowlevel"}


def _stage_link(base_port):
    ctx = zmq.Context.instance()
    a_in, a_out = f"tcp://127.0.0.1:{base_port}", f"tcp://127.0.0.1:{base_port + 1}"
    return transport.data_sender(ctx, a_in), transport.data_receiver(ctx, a_out), a_in, a_out


def _recv_until_end(pull, timeout=60.0):
    out, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pull.poll(100):
            msg = transport.recv(pull)
            out.append(msg)
            if msg.kind == "end":
                return out
    raise AssertionError(f"no 'end' within {timeout} s; got {[m.kind for m in out]}")


def _latent(seq, index, tokens, response, image_id):
    msg = Message(
        "latent",
        seq=seq,
        run="run-01",
        index=index,
        meta={"image_id": int(image_id), "rank": 1},
        buffers={"tokens": tokens.astype(np.float32), "response": response.astype(np.float32)},
    )
    msg.t["decode.done"] = time.time()
    return msg


def test_stage_reconstructs_a_trial_with_a_tiny_unclip(
    tiny_dataset, tiny_model, tiny_recon, base_port
):
    tokens, responses, ids = _trial_inputs(tiny_dataset, tiny_model, 2)
    bundle = load_bundle(tiny_recon)
    pipe = load_generator("tiny-random", embed_dim=128, device="cpu", dtype="float32")
    rec = Reconstructor(bundle, ReconOptions(mode="full", steps=2, prior_steps=3), pipe)
    push, pull, a_in, a_out = _stage_link(base_port)
    msgs = [
        Message("retrieval", seq=0, run="run-01", index=0, meta={"image_id": int(ids[0])}),
        _latent(1, 0, tokens[0], responses[0], ids[0]),
        Message("retrieval", seq=2, run="run-01", index=1, meta={"image_id": int(ids[1])}),
        _latent(3, 1, tokens[1], responses[1], ids[1]),
        Message("end", seq=4),
    ]
    with ReconstructStage(rec, generator="tiny-random", in_addr=a_in, out_addr=a_out) as stage:
        for m in msgs:
            transport.send(push, m)
        out = _recv_until_end(pull)
        assert stage.reconstructed == 2
    kinds = [m.kind for m in out]
    # retrievals pass through at once, latents are consumed, recons follow; end comes last
    assert kinds.index("retrieval") < kinds.index("recon") and "latent" not in kinds
    assert kinds.count("recon") == 2 and kinds[-1] == "end"
    recons = [m for m in out if m.kind == "recon"]
    assert [m.index for m in recons] == [0, 1]
    first = recons[0]
    assert first.buffers["image"].shape == (64, 64, 3) and first.buffers["image"].dtype == np.uint8
    assert first.buffers["blurry"].shape == (32, 32, 3)
    assert first.meta["mode"] == "full" and first.meta["generator"] == "tiny-random"
    assert first.meta["image_id"] == int(ids[0]) and first.meta["compute_ms"] > 0
    assert first.t["decode.done"] <= first.t["reconstruct.started"] <= first.t["reconstruct.done"]
    # the same trial number and seed through the stage as directly
    direct = rec(tokens[0], responses[0], 1)
    assert np.array_equal(first.buffers["image"], direct.image)


class _Slow:
    """A reconstructor that takes ``delay`` s per trial and can be held."""

    def __init__(self, delay):
        self.delay = delay
        self.options = ReconOptions(mode="lowlevel")
        self.gate = threading.Event()

    def __call__(self, tokens, response, number):
        self.gate.wait(10)
        time.sleep(self.delay)
        image = np.full((4, 4, 3), number, np.uint8)
        return ReconstructionOutput(image=image, timings_ms={"lowlevel": 1.0})


def test_a_slow_stage_reports_its_backlog_and_skips_nothing(base_port, caplog):
    push, pull, a_in, a_out = _stage_link(base_port)
    slow = _Slow(0.01)
    tokens, response = np.zeros((2, 3), np.float32), np.zeros(5, np.float32)
    stage = ReconstructStage(slow, warn_backlog=3, warn_seconds=0, in_addr=a_in, out_addr=a_out)
    with stage:
        for i in range(6):
            transport.send(push, _latent(2 * i, i, tokens, response, i))
            retrieval = Message("retrieval", seq=2 * i + 1, run="run-01", index=i)
            transport.send(push, retrieval)
        # while the worker is held, retrievals still pass straight through
        passed = []
        deadline = time.monotonic() + 10
        while len(passed) < 6 and time.monotonic() < deadline:
            if pull.poll(100):
                passed.append(transport.recv(pull))
        assert [m.kind for m in passed] == ["retrieval"] * 6
        status = stage.status()
        assert status["backlog"] >= 5 and status["behind_s"] >= 0  # one may be in progress
        slow.gate.set()
        transport.send(push, Message("end", seq=12))
        out = _recv_until_end(pull)
    recons = [m for m in out if m.kind == "recon"]
    assert [int(m.buffers["image"][0, 0, 0]) for m in recons] == [1, 2, 3, 4, 5, 6]
    assert stage.status()["backlog"] == 0 and stage.reconstructed == 6
    warnings = [r.getMessage() for r in caplog.records if "falling behind" in r.getMessage()]
    assert warnings and "3 trials waiting" in warnings[0], warnings


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_full_reconstruction_in_half_precision_on_a_gpu(
    tiny_dataset, tiny_model, tiny_recon, dtype
):
    tokens, responses, _ = _trial_inputs(tiny_dataset, tiny_model, 1)
    options = ReconOptions(mode="full", steps=2, prior_steps=3, device="cuda", dtype=dtype)
    pipe = load_generator("tiny-random", embed_dim=128, device="cuda", dtype=dtype)
    out = Reconstructor(load_bundle(tiny_recon), options, pipe)(tokens[0], responses[0], 1)
    assert out.image.shape == (64, 64, 3) and out.image.dtype == np.uint8
    assert pipe.unet.dtype == getattr(torch, dtype)
    assert out.image.std() > 0  # not a blank (NaN-clamped) image
