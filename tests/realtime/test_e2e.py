"""End to end on a tiny simulated subject: every volume arrives, retrieval beats chance."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from realtime.config import StreamConfig
from realtime.pipeline import run_stream


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
        recon="none",
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
    prep.specs["source"]["drop_volumes"] = [[run, 7]]
    pipeline._run_threads(prep.specs)
    from realtime.summary import summarize

    s = summarize(prep.out, log=lambda *a: None, offline=False)
    assert s["volumes_lost"] == 1
    assert s["volumes_received"] == _expected_volumes(tiny_dataset) - 1
    assert any(g.get("lost_volumes") == [7] and g["run"] == run for g in s["gaps"])


@pytest.mark.slow
def test_stream_command_with_stage_processes(
    tiny_dataset, tiny_model, tiny_recon, tmp_path, base_port, data_home
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
        "--recon",
        "lowlevel",
        "--recon-models",
        str(tiny_recon),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["volumes_lost"] == 0 and s["trials"] > 0
    assert "top-1" in res.stdout and "rank" in res.stdout  # one line per trial
    assert np.isfinite(s["realtime_factor"])
    # the reconstruct stage ran as its own process and drew every decoded trial
    assert s["reconstructions"] == s["trials"] and s["recon_mode"] == "lowlevel"
    assert len(list((out / "trials").glob("*_recon.png"))) == s["trials"]
    assert "reconstruct" in s["latency_ms"]


def test_full_reconstruction_of_every_trial(
    tiny_dataset, tiny_model, tiny_recon, tmp_path, base_port, data_home
):
    """Prior + tiny random unCLIP from the blurry image, as threads: every trial gets both
    images; the blurry ones carry the seen images' layout (PixCorr far above shuffled)."""
    import dataclasses

    from PIL import Image

    cfg = dataclasses.replace(
        _thread_config(tiny_dataset, tiny_model, tmp_path, base_port),
        recon="full",
        generator="tiny-random",
        recon_models=str(tiny_recon),
        recon_steps=2,
        prior_steps=4,
    )
    s = run_stream(cfg, log=lambda *a: None)
    out = tmp_path / "s"
    assert s["complete"] and s["reconstructions"] == s["trials"] > 0
    assert s["recon_mode"] == "full" and s["recon_latency_ms"]["n"] == s["trials"]
    recon = sorted((out / "trials").glob("*_recon.png"))
    blurry = sorted((out / "trials").glob("*_blurry.png"))
    assert len(recon) == len(blurry) == s["trials"]
    assert Image.open(recon[0]).size == (64, 64) and Image.open(blurry[0]).size == (32, 32)
    pix = s["recon_metrics"]["blurry"]["PixCorr"]
    assert pix["matched"] > pix["shuffled_mean"] + 4 * pix["shuffled_std"] + 0.1, pix
