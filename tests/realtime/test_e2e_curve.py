"""Whole tiny sessions with CURVE forced on (loopback): every link authenticated, nothing lost,
and a console whose key is not allowed is refused and the refusal shown."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading

import pytest
import zmq

from realtime.cli import main
from realtime.pipeline import run_stream
from rt_wire import transport
from rt_wire.curve_auth import CurveSecurity, stop_authenticator
from tests.realtime.test_e2e import _expected_volumes, _thread_config


@pytest.fixture
def keys(tmp_path):
    """This machine's key directory, and a stranger's that knows the session's public key."""
    for name in ("session", "stranger"):
        assert main(["keys", str(tmp_path / name), "--name", name]) == 0
    main(["keys", str(tmp_path / "stranger"), "--allow", str(tmp_path / "session/session.key")])
    return tmp_path / "session", tmp_path / "stranger"


def test_curve_session_threads(tiny_dataset, tiny_model, tmp_path, base_port, data_home, keys):
    session_keys, stranger_keys = keys
    cfg = dataclasses.replace(
        _thread_config(tiny_dataset, tiny_model, tmp_path, base_port),
        keys=str(session_keys),
        curve=True,
    )
    stranger = CurveSecurity.load(stranger_keys, servers=["session"])
    seen: list[str] = []
    received: list[bytes] = []
    done = threading.Event()

    def listen() -> None:  # a console whose key the session does not allow
        ctx = zmq.Context()
        sub = transport.display_subscriber(ctx, cfg.addresses()["telemetry"], security=stranger)
        while not done.is_set():
            if sub.poll(50):
                received.append(sub.recv())
        sub.close(0)
        stop_authenticator(ctx)
        ctx.term()

    listener = threading.Thread(target=listen, daemon=True)

    def log(*parts) -> None:
        seen.append(" ".join(map(str, parts)))
        if seen[-1].startswith("session folder:"):
            listener.start()  # just before the hub binds

    try:
        s = run_stream(cfg, log=log)
    finally:
        done.set()
    listener.join(5)
    assert s["complete"] and s["volumes_lost"] == 0
    assert s["volumes_received"] == _expected_volumes(tiny_dataset)
    assert s["trials"] == sum(len(tiny_dataset.events(r)) for r in tiny_dataset.runs)
    assert any(line.startswith("CURVE on every link") for line in seen)
    assert not received, "a subscriber without an allowed key received telemetry"
    refusals = [line for line in seen if line.startswith("[auth] refused a connection")]
    assert refusals and stranger.identity.public.decode() in refusals[0]


@pytest.mark.slow
def test_curve_session_stage_processes(
    tiny_dataset, tiny_model, tmp_path, base_port, data_home, keys
):
    out = tmp_path / "proc"
    cmd = [
        sys.executable, "-m", "realtime.cli", "stream", "--replay", str(tiny_dataset.root),
        "--headless", "--speed", "0", "--out", str(out), "--checkpoint", str(tiny_model),
        "--base-port", str(base_port), "--recon", "none", "--keys", str(keys[0]), "--curve",
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "CURVE on every link" in res.stdout
    s = json.loads((out / "summary.json").read_text())
    assert s["volumes_lost"] == 0 and s["trials"] > 0
    assert s["volumes_received"] == _expected_volumes(tiny_dataset)
