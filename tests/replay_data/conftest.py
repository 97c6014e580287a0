"""Fixtures of the replay_data tests: the tiny simulated subject, drawn and written once."""

from __future__ import annotations

import time

import pytest

from replay_data.simulate import build_subject, simulate_subject
from replay_data.simulation_config import SimulationConfig

TINY = SimulationConfig.tiny()


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """The tiny preset, generated once; also returns its generation time."""
    out = tmp_path_factory.mktemp("sim") / "tiny"
    t0 = time.process_time()  # CPU time: robust to other jobs sharing the machine
    ds = simulate_subject(out, TINY, progress=False)
    return ds, time.process_time() - t0


@pytest.fixture(scope="session")
def subject():
    return build_subject(TINY)
