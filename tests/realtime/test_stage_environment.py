"""The environment the process launcher gives each stage: threads, and glibc's allocator kept
from mapping fresh pages for every volume's buffers (``--malloc-reuse``)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from realtime.config import StreamConfig
from realtime.pipeline import MALLOC_REUSE_ENV, stage_environment
from rt_base.errors import ConfigError

#: a child that frees and allocates an 8 MiB array 20 times and prints its minor page faults
_CHURN = """
import resource, numpy as np
np.ones(1 << 20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    a = np.ones(1 << 20)
    del a
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_a_stage_gets_one_thread_unbuffered_output_and_the_allocator_settings():
    env = stage_environment({"PATH": "/bin", "OMP_NUM_THREADS": "8"}, threads=1)
    assert env["PATH"] == "/bin" and env["PYTHONUNBUFFERED"] == "1"
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "1"  # the launcher's, not 8
    for name, value in MALLOC_REUSE_ENV.items():
        assert env[name] == value
    assert int(env["MALLOC_MMAP_THRESHOLD_"]) >= 16 << 20  # above a volume's few MB


def test_settings_the_user_made_win_and_no_malloc_reuse_adds_none():
    env = stage_environment({"MALLOC_TRIM_THRESHOLD_": "4096"}, threads=2)
    assert env["MALLOC_TRIM_THRESHOLD_"] == "4096" and env["OMP_NUM_THREADS"] == "2"
    assert "MALLOC_MMAP_THRESHOLD_" in env
    plain = stage_environment({}, malloc_reuse=False)
    assert not [name for name in plain if name.startswith("MALLOC_")]


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's settings"
)
def test_with_the_settings_reused_buffers_take_no_fresh_pages():
    def faults(env: dict) -> int:
        out = subprocess.run(
            [sys.executable, "-c", _CHURN], env=env, capture_output=True, text=True, check=True
        )
        return int(out.stdout)

    plain = faults(stage_environment({}, malloc_reuse=False))
    reused = faults(stage_environment({}))
    assert plain >= 20  # at least a fresh mapping per array without the settings
    assert reused < plain / 10, (reused, plain)


def test_malloc_reuse_must_be_a_bool():
    assert StreamConfig().malloc_reuse is True
    with pytest.raises(ConfigError, match="'malloc_reuse' must be true or false, got 1"):
        StreamConfig(malloc_reuse=1)
