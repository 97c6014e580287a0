"""Test-wide settings: background-thread errors re-raise; Qt runs offscreen; data stays in tmp."""

from __future__ import annotations

import itertools
import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# One BLAS/OpenMP thread: on a shared 2-core machine a multi-threaded call whose second thread
# waits for a busy core stalls for a scheduler slice (see realtime/pipeline.py).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ["MINDEYE_RT_RAISE"] = "1"

_ports = itertools.count(21000 + 50 * (os.getpid() % 400))


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test runs torch on one thread (tiny models are fastest so, and stay fast on a
    loaded machine); the previous setting is restored afterwards."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def base_port() -> int:
    """A block of 8 loopback ports not used by another test of this run."""
    return _next_block()


def _next_block() -> int:
    import socket

    # below Linux's ephemeral range (32768-60999): a port there that is free now can be taken
    # later by a connection's local end (a client reconnecting to a killed stage's port may even
    # connect to itself), and a restarted stage then cannot bind it (seen once in CI)
    while True:
        base = next(_ports) * 8 % 12000 + 20000
        ok = True
        for p in range(base, base + 8):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("MINDEYE_RT_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    from replay_data.simulate import simulate_subject
    from replay_data.simulation_config import SimulationConfig

    # Less noise and more test images than the tiny preset: 10-way retrieval from 400
    # training trials, so "far above chance" is a real margin in a test of seconds.
    root = tmp_path_factory.mktemp("tiny") / "datasets" / "tiny"
    cfg = SimulationConfig.tiny(snr=4.0, n_test_images=10)
    return simulate_subject(root, cfg, progress=False)


@pytest.fixture(scope="session")
def tiny_model(tiny_dataset, tmp_path_factory):
    from mindeye_models.model_cache import ensure_model

    return ensure_model(
        tiny_dataset,
        models_dir=tmp_path_factory.mktemp("models"),
        preset="tiny",
        epochs=30,
        progress=False,
    )


#: a short recipe for the reconstruction models of the tiny subject (seconds, not minutes)
FAST_RECON = dict(prior_epochs=8, ae_steps=200, head_epochs=20)


@pytest.fixture(scope="session")
def tiny_recon(tiny_dataset, tiny_model, tmp_path_factory):
    """Reconstruction models (prior, low-level head, tiny autoencoder) of ``tiny_model``."""
    from mindeye_models.recon_training import ReconTrainConfig, ensure_recon_models

    return ensure_recon_models(
        tiny_dataset,
        tiny_model,
        models_dir=tmp_path_factory.mktemp("recon"),
        config=ReconTrainConfig(**FAST_RECON),
        progress=False,
    )
