"""End to end over LSL on this machine: stim-sim sends a replay's trials as markers, the replay
takes its trial events from them, and the result outlets send every trial's top-k back."""

from __future__ import annotations

import csv
import dataclasses
import threading
import uuid

import pytest

pylsl = pytest.importorskip("pylsl")

from realtime.lsl_results import topk_channels  # noqa: E402
from realtime.pipeline import run_stream  # noqa: E402
from realtime.stim_sim import StimulusSimulator  # noqa: E402
from tests.realtime.test_e2e import _thread_config  # noqa: E402

SPEED = 8.0  # the paced test: a tiny run of 60 volumes in 12 s
ONSET_TOLERANCE_S = 0.4  # data s (50 ms at speed 8); measured max 0.036 on 2 loaded cores


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _collect(name: str, connected: threading.Event, stop: threading.Event, out: list) -> None:
    """Pull every sample of stream ``name`` (resolved as soon as it appears) until ``stop``."""
    found = []
    while not found and not stop.is_set():
        found = pylsl.resolve_byprop("name", name, minimum=1, timeout=0.5)
    if not found:
        return
    inlet = pylsl.StreamInlet(found[0])
    inlet.open_stream(timeout=10)
    out.append(found[0])
    connected.set()
    while not stop.is_set():
        sample, _ = inlet.pull_sample(timeout=0.1)
        if sample is not None:
            out.append(sample)
    inlet.close_stream()


def _session_with_stim_sim(cfg, ds, speed: float, tag: str):
    """Run ``stream`` with markers from stim-sim and an extra top-k inlet; returns the summary,
    stim-sim, and the top-k samples."""
    name, prefix = f"stim-{tag}", f"rt-{tag}"
    cfg = dataclasses.replace(cfg, markers=f"lsl:{name}", lsl_results=prefix, speed=speed)
    result, errors = {}, []

    def stream():
        try:
            result["summary"] = run_stream(cfg, log=lambda *a: None)
        except BaseException as err:  # noqa: BLE001 - re-raised below
            errors.append(err)

    session = threading.Thread(target=stream)
    session.start()
    stop, connected, topk = threading.Event(), threading.Event(), []
    collector = threading.Thread(
        target=_collect, args=(f"{prefix}-topk", connected, stop, topk), daemon=True
    )
    collector.start()
    assert connected.wait(120), "the top-k outlet never appeared"
    sim = StimulusSimulator(ds, speed=speed, name=name, results=prefix, wait_s=60, log=print)
    try:
        sim.run()
    finally:
        session.join(120)
        stop.set()
        collector.join(10)
    if errors:
        raise errors[0]
    return result["summary"], sim, topk


@pytest.mark.slow
def test_stim_sim_drives_a_replay_over_lsl(
    tiny_dataset, tiny_model, tmp_path, base_port, data_home
):
    ds = tiny_dataset
    tag = uuid.uuid4().hex[:8]
    reference = run_stream(
        _thread_config(ds, tiny_model, tmp_path / "ref", base_port), log=lambda *a: None
    )
    cfg = _thread_config(ds, tiny_model, tmp_path, base_port)
    summary, sim, topk = _session_with_stim_sim(cfg, ds, 0.0, tag)
    out = tmp_path / "s"
    assert summary["complete"] and summary["volumes_lost"] == 0
    n_events = sum(len(ds.events(r)) for r in ds.runs)
    assert len(sim.sent) == n_events and summary["trials"] == n_events
    # every trial's image and onset come from the markers: the session's events are the sent
    events = {(e["run"], int(e["trial"])): e for e in _rows(out / "events.tsv")}
    assert len(events) == n_events
    for s in sim.sent:
        e = events[(s["run"], s["trial"])]
        assert int(e["image_id"]) == s["image_id"]
        assert float(e["onset"]) == pytest.approx(s["onset"], abs=1e-9)
    # ...and retrieval is the same as the replay that read events.tsv
    ref = {(r["run"], r["trial"]): r for r in _rows(tmp_path / "ref" / "s" / "retrievals.tsv")}
    got = {(r["run"], r["trial"]): r for r in _rows(out / "retrievals.tsv")}
    assert ref.keys() == got.keys()
    for key, row in ref.items():
        assert got[key]["top_ids"] == row["top_ids"], key
        assert got[key]["rank"] == row["rank"], key
    assert summary["retrieval_top1"] == reference["retrieval_top1"]
    # the top-k outlet carried every trial: run, trial, image, K ids, K scores
    info, samples = topk[0], topk[1:]
    assert info.type() == "MindEyeTopK" and info.channel_count() == len(topk_channels(5))
    assert len(samples) == n_events
    for sample in samples:
        trial = int(sample[1])
        row = got[(ds.runs[int(sample[0]) - 1], str(trial))]
        assert [int(v) for v in sample[3:8]] == [int(i) for i in row["top_ids"].split(",")]
    # stim-sim read every trial's details back on the JSON stream
    details = [r for r in sim.received if r["type"] == "retrieval"]
    assert len(details) == n_events
    assert {(d["run"], d["trial"]) for d in details} == {(s["run"], s["trial"]) for s in sim.sent}
    markers = summary["markers"]
    assert markers["trials"] == n_events and markers["malformed"] == 0
    assert set(markers["clocks"].values()) == {"onsets"}


@pytest.mark.slow
def test_stim_sim_in_real_time_times_trials_by_their_timestamps(
    tiny_dataset, tiny_model, tmp_path, base_port, data_home
):
    """At a paced speed the markers carry no onset: each comes from the sample's LSL timestamp
    on the session clock, against the run's first volume."""
    ds, speed = tiny_dataset, SPEED
    cfg = _thread_config(ds, tiny_model, tmp_path, base_port)
    summary, sim, topk = _session_with_stim_sim(cfg, ds, speed, uuid.uuid4().hex[:8])
    assert summary["complete"] and summary["volumes_lost"] == 0
    assert len(sim.sent) == summary["trials"] == len(topk) - 1
    events = {(e["run"], int(e["trial"])): e for e in _rows(tmp_path / "s" / "events.tsv")}
    errors = []
    for s in sim.sent:
        e = events[(s["run"], s["trial"])]
        assert int(e["image_id"]) == s["image_id"]
        errors.append(float(e["onset"]) - s["onset"])
    print(f"onset error at speed {speed:g} (data s): " + " ".join(f"{x:+.3f}" for x in errors))
    assert max(abs(x) for x in errors) < ONSET_TOLERANCE_S
    assert set(summary["markers"]["clocks"].values()) == {"volumes"}
    assert len([r for r in sim.received if r["type"] == "retrieval"]) == len(sim.sent)
