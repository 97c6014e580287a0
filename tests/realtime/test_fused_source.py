"""``--fuse-source`` (the default with ``--fuse-stages``): the source in the fused stage's
process decodes a session exactly as a source of its own does, and its spec and options are
checked."""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import pytest
import zmq

from realtime.config import StreamConfig
from realtime.pipeline import run_stream
from realtime.stages import build_stage, fuse_specs, stage_class
from realtime.stages.base import Stage
from realtime.stages.fused import FusedStage
from realtime.stages.fused_source import SourcedFusedStage
from realtime.stages.source_control import SourceStage
from rt_base.errors import ConfigError
from rt_base.names import FUSED_PARTS, FUSED_STAGE
from rt_wire import transport
from rt_wire.message import Message
from tests.realtime.test_e2e import _thread_config
from tests.realtime.test_fused_stage import _specs


def _session(dataset, model, out, base_port, **options):
    cfg = dataclasses.replace(
        _thread_config(dataset, model, out, base_port), out=str(out), **options
    )
    return run_stream(cfg, log=lambda *a: None)


def _record(out) -> dict:
    """retrievals.tsv less its latency column, and the masked volumes the recorder got."""
    record = {
        "retrievals": [r.split("\t")[:-1] for r in (out / "retrievals.tsv").read_text().split("\n")]
    }
    for path in sorted((out / "runs").glob("*_raw.f32")):
        record[path.name] = path.read_bytes()
    return record


def test_the_source_in_the_fused_stage_decodes_as_its_own_process(
    tiny_dataset, tiny_model, tmp_path, base_port, data_home
):
    alone = _session(tiny_dataset, tiny_model, tmp_path / "alone", base_port, fuse_source=False)
    inside = _session(tiny_dataset, tiny_model, tmp_path / "inside", base_port)  # the default
    assert inside["complete"] and inside["volumes_lost"] == 0 and inside["nothing_lost"]
    assert inside["volumes_received"] == alone["volumes_received"] > 0
    assert inside["trials"] == alone["trials"] > 0
    assert _record(tmp_path / "inside") == _record(tmp_path / "alone")
    # the source still stamps its span, and the parts theirs
    for stage in ("source", *FUSED_PARTS):
        assert inside["latency_ms"][stage]["n"] == alone["latency_ms"][stage]["n"] > 0
    spec = json.loads((tmp_path / "inside" / "stages" / f"{FUSED_STAGE}.json").read_text())
    assert sorted(spec["parts"]) == sorted(["source", *FUSED_PARTS])
    assert "in_addr" not in spec and spec["parts"]["source"]["dataset"] == str(tiny_dataset.root)


def test_fuse_specs_with_the_source_has_no_input_and_no_source_stage():
    specs = fuse_specs(_specs(), with_source=True)
    assert sorted(specs) == ["fused", "recorder"]
    fused = specs["fused"]
    assert "in_addr" not in fused and fused["out_addr"] == "tcp://127.0.0.1:4"
    assert fused["parts"]["source"] == {"speed": 0}  # its links dropped
    broken = _specs()
    del broken["source"]
    with pytest.raises(ConfigError, match=r"no spec for \['source'\]"):
        fuse_specs(broken, with_source=True)


def test_the_fused_class_follows_its_parts():
    parts = {n: {} for n in FUSED_PARTS}
    assert stage_class("fused", {"parts": parts}) is FusedStage
    assert stage_class("fused", {"parts": {**parts, "source": {}}}) is SourcedFusedStage
    assert stage_class("fused", {"parts": [1]}) is FusedStage  # refused by its own checks


def test_a_sourced_fused_spec_with_an_input_or_linked_parts_is_refused(tiny_dataset):
    parts = {n: {} for n in FUSED_PARTS}
    parts["source"] = {"dataset": str(tiny_dataset.root), "out_addr": "tcp://127.0.0.1:9"}
    with pytest.raises(ConfigError, match=r"part 'source' must not have links.*out_addr"):
        build_stage("fused", {"parts": parts})
    with pytest.raises(ConfigError, match="'parts' must give the specs of"):
        SourcedFusedStage.from_options({}, parts={"source": {}})
    source = build_stage("source", {"dataset": str(tiny_dataset.root)})
    with pytest.raises(ConfigError, match="has no input"):
        SourcedFusedStage(source, [], in_addr="tcp://127.0.0.1:9")
    with pytest.raises(ConfigError, match="first part must be a source"):
        SourcedFusedStage(object(), [])


def test_fuse_source_options_are_checked():
    with pytest.raises(ConfigError, match="'fuse_source' must be true or false, got 'yes'"):
        StreamConfig(fuse_source="yes")
    with pytest.raises(ConfigError, match="--fuse-source .* needs\n?.*--fuse-stages"):
        StreamConfig(fuse_source=True, fuse_stages=False)
    assert StreamConfig().source_in_fused is True
    assert StreamConfig(fuse_stages=False).source_in_fused is False
    assert StreamConfig(fuse_source=False).source_in_fused is False


class _Part(Stage):
    """A part that passes messages on; its ``idle`` hands out what background work made."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__()
        self.ready: list[Message] = []

    def handle(self, msg):
        return [msg]

    def idle(self):
        ready, self.ready = self.ready, []
        return ready


class _WaitingSource(SourceStage):
    """Opens a run, then waits (its loop turning, as a scanner source's does while no file
    comes) until ``release`` is set, then ends."""

    def __init__(self, **links) -> None:
        super().__init__(**links)
        self.release = threading.Event()

    def apply_command(self, cmd, value):
        pass

    def control_state(self):
        return {}

    def handle(self, msg):
        return ()

    def produce(self):
        yield Message("run_start", run="run-01", meta={})
        deadline = time.monotonic() + 10
        while not self.release.is_set() and time.monotonic() < deadline:
            self._maybe_status()
            time.sleep(0.01)
        yield Message("end", meta={})


def test_the_parts_background_work_goes_out_while_the_source_waits(base_port):
    """What a part's ``idle`` makes while the source waits for its next volume is sent at once
    (the host's turn), not after the source's next message."""
    source = _WaitingSource()
    parts = [_Part(name) for name in FUSED_PARTS]
    out_addr = f"tcp://127.0.0.1:{base_port}"
    pull = transport.data_receiver(zmq.Context.instance(), out_addr)
    stage = SourcedFusedStage(source, parts, out_addr=out_addr)
    try:
        stage.start()
        first = transport.recv(pull) if pull.poll(5000) else None
        assert first is not None and first.kind == "run_start"
        assert "source.done" in first.t and "decode.done" in first.t  # through every part
        parts[-1].ready.append(Message("gap", run="run-01", meta={"made": "in the background"}))
        got = transport.recv(pull) if pull.poll(5000) else None
        assert got is not None and got.kind == "gap"  # while the source still waits
        assert not source.release.is_set()
        source.release.set()
        last = transport.recv(pull) if pull.poll(5000) else None
        assert last is not None and last.kind == "end"
        assert stage.join(5)
    finally:
        if stage.running:
            stage.stop()
        pull.close(0)


def test_the_operator_controls_the_source_in_the_fused_process(tiny_dataset, base_port):
    """Pause, resume and stop reach the source through its control channel, bound by the fused
    process; after the stop the session ends cleanly and the channel closes with the stage."""
    from realtime.stages.source import ReplaySource

    out_addr, control = (f"tcp://127.0.0.1:{base_port + i}" for i in range(2))
    source = ReplaySource(str(tiny_dataset.root), speed=10, control_addr=control)
    stage = SourcedFusedStage(source, [_Part(n) for n in FUSED_PARTS], out_addr=out_addr)
    ctx = zmq.Context.instance()
    pull = transport.data_receiver(ctx, out_addr)
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.setsockopt(zmq.RCVTIMEO, 5000)

    def ask(cmd: str) -> dict:
        req.send_json({"cmd": cmd})
        return req.recv_json()

    try:
        stage.start()
        req.connect(control)
        assert pull.poll(5000) and transport.recv(pull).kind == "run_start"
        assert ask("pause")["state"]["paused"] is True
        while pull.poll(300):  # what was on its way
            transport.recv(pull)
        assert not pull.poll(500)  # paused: nothing more
        assert ask("resume")["state"]["paused"] is False
        assert pull.poll(5000)  # going again
        assert ask("stop")["state"]["stopping"] is True
        kinds = []
        while pull.poll(5000):
            msg = transport.recv(pull)
            kinds.append(msg.kind)
            if msg.kind == "end":
                assert msg.meta.get("stopped") is True
                break
        assert kinds[-2:] == ["run_end", "end"], kinds
        assert stage.join(10)
        source.join_control(5)
        assert not source._control_thread.is_alive()
    finally:
        if stage.running:
            stage.stop()
        req.close(0)
        pull.close(0)
