"""summary.json's reconstruction fields, from a session folder written by the recorder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from realtime.stages.recorder import RecorderStage
from realtime.summary import latency_figures, summarize
from realtime.summary_recon_metrics import reconstruction_metrics
from replay_data.dataset_format import Event
from replay_data.dataset_writer import DatasetWriter
from rt_wire.message import Message

T0 = 1_700_000_000.0
N_IMAGES = 8
STIM_PX = 48


def _stimuli() -> np.ndarray:
    """Distinct images: smooth random colour fields (like photos, pixels correlate locally)."""
    rng = np.random.default_rng(3)
    small = rng.integers(0, 256, (N_IMAGES, 6, 6, 3)).astype(np.uint8)
    return np.repeat(np.repeat(small, STIM_PX // 6, axis=1), STIM_PX // 6, axis=2)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A minimal complete replay dataset: 4x4x4 grid, one 10-volume run, 8 stimuli."""
    root = tmp_path_factory.mktemp("ds") / "mini"
    mask = np.zeros((4, 4, 4), bool)
    mask[1:3, 1:3, 1:3] = True
    with DatasetWriter(
        root, name="mini", subject="s", tr=1.5, voxel_size=2.0, shape=(4, 4, 4), simulated=True
    ) as w:
        w.write_masks(mask)
        w.write_stimuli(_stimuli(), ["test"] * N_IMAGES, [f"img{i}" for i in range(N_IMAGES)])
        events = [Event(3.0 * k, 3.0, k, 1, "test", k) for k in range(3)]
        w.write_run(np.full((4, 4, 4, 10), 100.0), events)
    return root


def _session(out, dataset, trials, *, recon=None, blurry=None, compute_ms=None):
    """Write a session folder through the recorder: a retrieval (and a recon) per trial.

    ``recon(k, image_id)`` / ``blurry(k, image_id)`` give trial k's images (None: no recon).
    """
    rec = RecorderStage(out, print_trials=False)
    for k, image_id in enumerate(trials):
        t = {
            "source.acquired": T0 + k,
            "decode.received": T0 + k + 0.01,
            "decode.done": T0 + k + 0.02,
        }
        meta = {"image_id": image_id, "split": "test", "repetition": 1, "rank": 1, "ways": 8}
        buffers = {
            "ids": np.array([image_id], np.int64),
            "scores": np.array([1.0], np.float32),
            "embedding": np.zeros(4, np.float32),
        }
        rec.handle(
            Message("retrieval", run="run-01", index=k, meta=meta, t=dict(t), buffers=buffers)
        )
        if recon is None:
            continue
        t.update({"reconstruct.started": T0 + k + 0.1 * (k + 1)})
        t["reconstruct.done"] = t["reconstruct.started"] + compute_ms[k] / 1e3
        images = {"image": recon(k, image_id)}
        if blurry is not None:
            images["blurry"] = blurry(k, image_id)
        meta = {
            **meta,
            "mode": "full" if blurry is not None else "lowlevel",
            "compute_ms": compute_ms[k],
            "backlog": 0,
            "seed": k,
        }
        rec.handle(Message("recon", run="run-01", index=k, meta=meta, t=t, buffers=images))
    rec.finish()
    config = {"decode_delay": 6.0, "speed": 0.0}
    session = {
        "config": config,
        "dataset": str(dataset),
        "dataset_name": "mini",
        "simulated": True,
        "checkpoint": "none",
    }
    (out / "config.json").write_text(json.dumps(session))
    return session


def test_summary_without_recons(tmp_path, dataset):
    _session(tmp_path, dataset, [0, 1, 2])
    lines = []
    s = summarize(tmp_path, log=lines.append, offline=False)
    assert s["reconstructions"] == 0
    assert s["recon_mode"] is None
    assert s["recon_latency_ms"] is None and s["recon_delay_ms"] is None
    assert s["recon_metrics"] is None
    assert "reconstruct" not in s["latency_ms"] and s["latency_ms"]["decode"]["n"] == 3
    assert not any("reconstruction" in line for line in lines)
    assert json.loads((tmp_path / "summary.json").read_text())["reconstructions"] == 0


def test_perfect_lowlevel_recons_beat_the_shuffled_baseline(tmp_path, dataset):
    stimuli = _stimuli()
    trials = [0, 1, 2, 3, 4, 5, 6, 7, 2]  # image 2 seen twice
    compute_ms = [10.0 * (k + 1) for k in range(len(trials))]  # 10 .. 90 ms
    _session(tmp_path, dataset, trials, recon=lambda k, i: stimuli[i], compute_ms=compute_ms)
    lines = []
    s = summarize(tmp_path, log=lines.append, offline=False)
    assert s["reconstructions"] == 9 and s["recon_mode"] == "lowlevel"
    lat = s["recon_latency_ms"]
    assert lat["n"] == 9 and lat["p50"] == pytest.approx(50.0) and lat["max"] == 90.0
    # delay = reconstruct.done - decode.done = 0.1 (k + 1) - 0.02 s + compute
    delays = [1e3 * (0.1 * (k + 1) - 0.02) + compute_ms[k] for k in range(9)]
    assert s["recon_delay_ms"]["max"] == pytest.approx(max(delays), abs=0.02)
    assert s["recon_delay_ms"]["p50"] == pytest.approx(np.percentile(delays, 50), abs=0.02)
    # the per-stage figure is the compute span only (started -> done), not the queueing
    assert s["latency_ms"]["reconstruct"]["p50"] == pytest.approx(50.0, abs=0.01)
    assert s["latency_ms"]["decode"]["n"] == 9  # recon records do not count twice

    m = s["recon_metrics"]
    assert m["trials"] == 9 and m["size"] == 64 and "blurry" not in m
    assert set(m["recon"]) == {"PixCorr", "SSIM", "PixelID"}
    assert m["recon"]["PixCorr"]["matched"] == pytest.approx(1.0, abs=1e-3)
    assert m["recon"]["SSIM"]["matched"] == pytest.approx(1.0, abs=1e-3)
    for v in m["recon"].values():
        assert v["matched"] > v["shuffled_mean"] + 3 * v["shuffled_std"], m
    # PixelID: the repeated image ties with its twin (a loss), so 1 - 2 losses / (9 * 8)
    assert m["recon"]["PixelID"]["matched"] == pytest.approx(1 - 2 / 72, abs=1e-4)
    assert any(line.startswith("reconstructions 9 (lowlevel)") for line in lines)
    assert any(
        line.startswith("recon vs seen images (9 trials, 64 px): PixCorr 1.000") for line in lines
    )
    assert json.loads((tmp_path / "summary.json").read_text())["recon_metrics"] == m


def test_full_mode_scores_the_blurry_images_separately(tmp_path, dataset):
    stimuli = _stimuli()
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    _session(
        tmp_path,
        dataset,
        list(range(8)),
        recon=lambda k, i: stimuli[i],
        blurry=lambda k, i: noise[k],  # unrelated to the seen image
        compute_ms=[100.0] * 8,
    )
    lines = []
    s = summarize(tmp_path, log=lines.append, offline=False, recon_metrics_size=32)
    assert s["recon_mode"] == "full"
    m = s["recon_metrics"]
    assert m["size"] == 32 and m["blurry_trials"] == 8 and m["trials"] == 8
    assert m["recon"]["PixCorr"]["matched"] == pytest.approx(1.0, abs=1e-3)
    blurry = m["blurry"]["PixCorr"]
    assert abs(blurry["matched"]) < 0.2  # noise: no better than a shuffled pairing
    assert abs(blurry["matched"] - blurry["shuffled_mean"]) < 0.2
    assert any(line.startswith("blurry vs seen images (8 trials, 32 px)") for line in lines)


def test_metrics_need_two_scorable_recons(tmp_path, dataset):
    stimuli = _stimuli()
    session = _session(
        tmp_path, dataset, [1, 2], recon=lambda k, i: stimuli[i], compute_ms=[5.0, 6.0]
    )
    rows = [
        {"image_id": "1", "recon_file": "trials/0001_recon.png"},
        {"image_id": "", "recon_file": "trials/0002_recon.png"},  # no ground truth
        {"image_id": "99", "recon_file": "trials/0002_recon.png"},  # not in the stimuli
        {"image_id": "2", "recon_file": "trials/missing.png"},
    ]
    assert reconstruction_metrics(tmp_path, session, rows) is None
    good = [rows[0], {"image_id": "2", "recon_file": "trials/0002_recon.png"}]
    m = reconstruction_metrics(tmp_path, session, good, size=16, n_shuffles=3)
    assert m["trials"] == 2 and m["size"] == 16 and m["n_shuffles"] == 3
    assert m["recon"]["PixelID"]["matched"] == 1.0
    stages, _, _ = latency_figures(tmp_path)
    assert stages["reconstruct"]["n"] == 2
