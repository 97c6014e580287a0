"""The LSL links on this machine: the marker inlet (resolve, parse, time, refuse), the result
outlets (what an inlet reads), and the options' errors."""

from __future__ import annotations

import json
import time
import uuid

import numpy as np
import pytest

pylsl = pytest.importorskip("pylsl")

from realtime.config import StreamConfig  # noqa: E402
from realtime.lsl_markers import MarkerInlet, parse_markers_option  # noqa: E402
from realtime.lsl_results import ResultsOutlet, topk_channels  # noqa: E402
from rt_base.errors import ConfigError, StageError  # noqa: E402
from rt_wire.message import Message  # noqa: E402


def _unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def test_markers_option():
    assert parse_markers_option("lsl") is None
    assert parse_markers_option("lsl:PsychoPy Markers") == "PsychoPy Markers"
    for bad in ("zmq", "lsl:", "LSL", "", None, 3):
        with pytest.raises(ConfigError, match="'markers' must be 'lsl'"):
            parse_markers_option(bad)
    with pytest.raises(ConfigError, match="'markers' must be"):
        StreamConfig(markers="lsl-markers")
    with pytest.raises(ConfigError, match="'lsl_results' must be a stream name prefix"):
        StreamConfig(lsl_results="my results!")
    assert StreamConfig(markers="lsl:x", lsl_results="lab-a").lsl_results == "lab-a"


def test_the_inlet_parses_times_and_survives_bad_samples():
    name = _unique("markers")
    info = pylsl.StreamInfo(name, "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, name)
    outlet = pylsl.StreamOutlet(info)
    inlet = MarkerInlet(name, wait_s=10).open()
    assert inlet.info["name"] == name and "Markers" in inlet.describe()
    assert outlet.wait_for_consumers(10)
    sent_at = time.time()
    for sample in ('{"v": 1, "type": "trial", "image_id": 3}', "garbage", "trigger", "42"):
        outlet.push_sample([sample])
    got = []
    deadline = time.monotonic() + 10
    while len(got) < 4 and time.monotonic() < deadline:
        got += inlet.pull()
        time.sleep(0.01)
    assert [g.raw for g in got] == [
        '{"v": 1, "type": "trial", "image_id": 3}',
        "garbage",
        "trigger",
        "42",
    ]
    assert got[0].marker.image_id == 3 and got[3].marker.image_id == 42
    assert got[1].marker is None and "JSON object" in got[1].error
    assert got[2].marker.type == "trigger"
    for g in got:  # pushed now, on this machine: the session clock agrees within a few ms
        assert abs(g.time - sent_at) < 0.5 and g.received >= g.time - 0.05
    inlet.close()


def test_no_stream_is_a_clear_error():
    with pytest.raises(StageError, match="start the stimulus program"):
        MarkerInlet(_unique("nobody"), wait_s=1.0).open()


def _read(inlet, n: int, timeout: float = 10.0) -> list:
    out, deadline = [], time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        sample, _ = inlet.pull_sample(timeout=0.1)
        if sample is not None:
            out.append(sample)
    return out


def _inlet(name: str):
    (info,) = pylsl.resolve_byprop("name", name, minimum=1, timeout=10)
    inlet = pylsl.StreamInlet(info)
    inlet.open_stream(timeout=10)
    return info, inlet


def test_result_outlets_carry_topk_details_and_reconstructions(tmp_path, base_port):
    prefix = _unique("res")
    outlet = ResultsOutlet(
        f"tcp://127.0.0.1:{base_port}", top_k=3, prefix=prefix, session_dir=tmp_path
    ).start()
    try:
        topk_info, topk = _inlet(f"{prefix}-topk")
        res_info, res = _inlet(f"{prefix}-results")
        assert topk_info.type() == "MindEyeTopK" and res_info.type() == "MindEyeResults"
        assert topk_info.source_id().startswith(f"{prefix}-topk@")
        full = topk.info()  # the channel labels travel in the stream's description
        ch = full.desc().child("channels").child("channel")
        labels = []
        while not ch.empty():
            labels.append(ch.child_value("label"))
            ch = ch.next_sibling()
        assert labels == topk_channels(3)
        time.sleep(0.5)  # both inlets connected before the first push
        for index, image in ((0, 12), (1, None)):
            msg = Message(
                "retrieval",
                run="run-01",
                index=index,
                meta={"image_id": image, "onset": 3.0, "rank": 2, "in_bank": True},
                t={"source.acquired": 1.0, "decode.done": 1.05},
                buffers={
                    "ids": np.array([7, 12, 4], np.int64),
                    "scores": np.array([0.9, 0.5, 0.25], np.float32),
                    "embedding": np.zeros(4, np.float32),
                },
            )
            outlet.publish_retrieval(msg)
        (tmp_path / "trials").mkdir()
        (tmp_path / "trials" / "0001_recon.png").write_bytes(b"png")
        (tmp_path / "recons.tsv").write_text(
            "n\trun\ttrial\timage_id\tmode\trecon_file\n1\trun-01\t0\t12\tlowlevel\t"
            "trials/0001_recon.png\n2\trun-01\t1\t"  # a line still being written
        )
        samples = _read(topk, 2)
        assert samples[0] == [1, 0, 12, 7, 12, 4, pytest.approx(0.9), 0.5, 0.25]
        assert samples[1][:3] == [1, 1, -1]
        details = [json.loads(s[0]) for s in _read(res, 3)]
    finally:
        outlet.stop(drain_s=0.1)
    assert details[0]["top_ids"] == [7, 12, 4] and details[0]["latency_ms"] == 50.0
    assert details[1]["image_id"] is None and details[0]["v"] == 1
    recon = details[2]
    assert recon["type"] == "reconstruction" and recon["trial"] == 0
    assert recon["path"] == str((tmp_path / "trials" / "0001_recon.png").resolve())
    assert outlet.sent == {"retrievals": 2, "reconstructions": 1}


def test_mne_lsl_reads_the_topk_stream(base_port):
    """The numeric stream is what mne-lsl expects: named channels, one sample per trial."""
    stream_mod = pytest.importorskip("mne_lsl.stream")
    prefix = _unique("mne")
    outlet = ResultsOutlet(f"tcp://127.0.0.1:{base_port}", top_k=2, prefix=prefix).start()
    stream = stream_mod.StreamLSL(bufsize=30, name=f"{prefix}-topk", stype="MindEyeTopK")
    stream.connect(timeout=10)
    try:
        assert stream.ch_names == topk_channels(2)
        time.sleep(0.5)
        for index in range(3):
            outlet.publish_retrieval(
                Message(
                    "retrieval",
                    run="run-01",
                    index=index,
                    meta={"image_id": 8},
                    buffers={"ids": np.array([8, 3]), "scores": np.array([0.7, 0.1], np.float32)},
                )
            )
        deadline = time.monotonic() + 10
        while stream.n_new_samples < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        data, _ = stream.get_data(winsize=3)
    finally:
        stream.disconnect()
        outlet.stop(drain_s=0.1)
    assert data.shape == (7, 3)  # run, trial, image_id, 2 ids, 2 scores
    assert data[1].tolist() == [0, 1, 2] and data[2].tolist() == data[3].tolist() == [8, 8, 8]
