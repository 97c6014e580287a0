"""End to end on a tiny simulated subject: every volume arrives, retrieval beats chance."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from realtime.config import StreamConfig
from realtime.pipeline import run_stream


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    from replay_data.simulate import SimulationConfig, simulate_subject

    # Less noise and more test images than the tiny preset: 10-way retrieval from 400
    # training trials, so "far above chance" is a real margin in a test of seconds.
    root = tmp_path_factory.mktemp("tiny") / "datasets" / "tiny"
    cfg = SimulationConfig.tiny(snr=4.0, n_test_images=10)
    return simulate_subject(root, cfg, progress=False)


@pytest.fixture(scope="module")
def tiny_model(tiny_dataset, tmp_path_factory):
    from mindeye_models.demo import ensure_demo_model

    return ensure_demo_model(
        tiny_dataset,
        models_dir=tmp_path_factory.mktemp("models"),
        preset="tiny",
        epochs=30,
        progress=False,
    )


def _expected_volumes(ds):
    return sum(ds.load_run(r).shape[-1] for r in ds.runs)


def _thread_config(dataset, model, tmp_path, base_port) -> StreamConfig:
    """A quiet, headless, as-fast-as-possible session with the stages as threads."""
    return StreamConfig(
        replay=str(dataset.root),
        out=str(tmp_path / "s"),
        speed=0,
        headless=True,
        checkpoint=str(model),
        launcher="thread",
        base_port=base_port,
        quiet=True,
    )


def test_stream_threads_end_to_end(tiny_dataset, tiny_model, tmp_path, base_port, data_home):
    cfg = _thread_config(tiny_dataset, tiny_model, tmp_path, base_port)
    s = run_stream(cfg, log=lambda *a: None)
    assert s["complete"] and s["simulated"] is True
    assert s["volumes_lost"] == 0
    assert s["volumes_received"] == _expected_volumes(tiny_dataset)
    n_events = sum(len(tiny_dataset.events(r)) for r in tiny_dataset.runs)
    assert s["trials"] == n_events
    chance = 1.0 / s["retrieval_ways"]
    assert s["retrieval_top1"] >= 3 * chance, s
    assert s["offline_top1"] >= 3 * chance, s
    for stage in ("preprocess", "estimate", "decode"):
        assert s["latency_ms"][stage]["n"] > 0
    out = tmp_path / "s"
    assert json.loads((out / "summary.json").read_text())["trials"] == s["trials"]
    rows = (out / "retrievals.tsv").read_text().strip().splitlines()
    assert len(rows) == 1 + s["trials"]
    assert len(list((out / "trials").glob("*_response.npy"))) == s["trials"]
    assert len(list((out / "trials").glob("*_embedding.npy"))) == s["trials"]


def test_a_dropped_volume_is_reported(tiny_dataset, tiny_model, tmp_path, base_port, data_home):
    from realtime import pipeline

    cfg = _thread_config(tiny_dataset, tiny_model, tmp_path, base_port)
    prep = pipeline.prepare(cfg, log=lambda *a: None)
    run = tiny_dataset.runs[0]
    prep["specs"]["source"]["drop_volumes"] = [[run, 7]]
    pipeline._run_threads(prep["specs"])
    from realtime.summary import summarize

    s = summarize(prep["out"], log=lambda *a: None, offline=False)
    assert s["volumes_lost"] == 1
    assert s["volumes_received"] == _expected_volumes(tiny_dataset) - 1
    assert any(g.get("lost_volumes") == [7] and g["run"] == run for g in s["gaps"])


@pytest.mark.slow
def test_stream_command_with_stage_processes(
    tiny_dataset, tiny_model, tmp_path, base_port, data_home
):
    out = tmp_path / "proc"
    cmd = [
        sys.executable,
        "-m",
        "realtime.cli",
        "stream",
        "--replay",
        str(tiny_dataset.root),
        "--headless",
        "--speed",
        "0",
        "--out",
        str(out),
        "--checkpoint",
        str(tiny_model),
        "--base-port",
        str(base_port),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["volumes_lost"] == 0 and s["trials"] > 0
    assert "top-1" in res.stdout and "rank" in res.stdout  # one line per trial
    assert np.isfinite(s["realtime_factor"])
