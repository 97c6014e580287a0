"""``mindeye-rt keys``, the key options, and a session's choice of CURVE."""

from __future__ import annotations

import argparse
import os
import stat

import pytest
import zmq

from realtime.cli import main
from realtime.cli_keys import (
    add_key_options,
    key_arguments,
    report_refusals_to_telemetry,
    security_from_args,
)
from realtime.config import StreamConfig
from rt_base.errors import ConfigError
from rt_wire import transport
from rt_wire.curve_auth import CurveSecurity, stop_authenticator, use_security
from rt_wire.curve_keys import load_identity
from rt_wire.message import Message
from rt_wire.telemetry import TelemetryHub


def _keys(*argv) -> int:
    return main(["keys", *map(str, argv)])


def test_keys_makes_a_pair_with_the_right_modes(tmp_path, capsys):
    d = tmp_path / "keys"
    assert _keys(d, "--name", "scanner") == 0
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE((d / "scanner.key_secret").stat().st_mode) == 0o600
    assert stat.S_IMODE((d / "scanner.key").stat().st_mode) == 0o644
    out = capsys.readouterr().out
    assert "mode 0600" in out and "--allow scanner.key" in out
    # a second pair of the same name is refused (peers hold the old public key) unless forced
    old = load_identity(d).public
    assert _keys(d, "--name", "scanner") == 2
    assert "already exists" in capsys.readouterr().err
    assert _keys(d, "--name", "scanner", "--force") == 0
    assert load_identity(d).public != old


def test_keys_allow_and_list(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    _keys(a, "--name", "gpu")
    _keys(b, "--name", "scanner")
    assert _keys(a, "--allow", b / "scanner.key", "--list") == 0
    out = capsys.readouterr().out
    scanner = load_identity(b).public.decode()
    assert "allowed scanner.key" in out and f"scanner.key: {scanner}" in out
    assert stat.S_IMODE((a / "allowed").stat().st_mode) == 0o700
    assert _keys(a, "--allow", b / "scanner.key_secret") == 2
    assert "secret certificate" in capsys.readouterr().err
    assert _keys(tmp_path / "missing", "--allow", b / "scanner.key") == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.key"
    bad.write_text("garbage\n")
    assert _keys(a, "--allow", bad) == 2
    assert "No public key" in capsys.readouterr().err


def _args(argv):
    p = argparse.ArgumentParser()
    add_key_options(p)
    return p.parse_args(argv)


def test_key_options(tmp_path):
    _keys(tmp_path / "k", "--name", "m")
    assert security_from_args(_args([]), ["tcp://127.0.0.1:5555", None]) is None
    with pytest.raises(ConfigError, match=r"10\.1\.2\.3.*leaves loopback.*mindeye-rt keys DIR"):
        security_from_args(_args([]), ["tcp://10.1.2.3:5555"])
    with pytest.raises(ConfigError, match="--curve is on.*mindeye-rt keys"):
        security_from_args(_args(["--curve"]), ["tcp://127.0.0.1:5555"])
    sec = security_from_args(_args(["--keys", str(tmp_path / "k")]), ["tcp://127.0.0.1:1"])
    assert sec is not None and sec.identity.name == "m"
    assert key_arguments(sec) == ["--keys", str(tmp_path / "k"), "--key-name", "m"]
    os.chmod(tmp_path / "k" / "m.key_secret", 0o640)
    with pytest.raises(ConfigError, match="mode 0640"):
        security_from_args(_args(["--keys", str(tmp_path / "k")]), [])


def test_a_session_that_leaves_loopback_needs_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"links leave loopback \(tcp://10\.0\.0\.5:5550\)"):
        StreamConfig(host="10.0.0.5")
    with pytest.raises(ConfigError, match=r"0\.0\.0\.0.*mindeye-rt keys DIR"):
        StreamConfig(host="0.0.0.0")
    with pytest.raises(ConfigError, match="'curve' is on"):
        StreamConfig(curve=True)
    assert StreamConfig().security() is None  # loopback: no set-up
    with pytest.raises(ConfigError, match="does not exist.*mindeye-rt keys"):
        StreamConfig(host="10.0.0.5", keys=str(tmp_path / "none")).security()
    _keys(tmp_path / "k", "--name", "m")
    cfg = StreamConfig(host="10.0.0.5", keys=str(tmp_path / "k"))
    assert cfg.curve_required and cfg.security().identity.name == "m"
    with pytest.raises(ConfigError, match="'key_name'"):
        StreamConfig(keys=str(tmp_path / "k"), key_name="../x")


def test_a_refusal_reaches_the_telemetry(tmp_path, base_port):
    """A stage process's refusals are published as warning logs on the session's hub."""
    _keys(tmp_path / "session", "--name", "session")
    mine = CurveSecurity.load(tmp_path / "session")
    addr = {n: f"tcp://127.0.0.1:{base_port + i}" for i, n in enumerate(("in", "out", "data"))}
    hub_ctx, stage_ctx, other_ctx = zmq.Context(), zmq.Context(), zmq.Context()
    hub = TelemetryHub(addr["in"], addr["out"], context=hub_ctx)
    socks = []
    try:
        with use_security(mine):
            hub.start()
        socks.append(transport.display_subscriber(hub_ctx, addr["out"], ("log",), security=mine))
        socks.append(transport.data_receiver(stage_ctx, addr["data"], security=mine))
        socks.append(report_refusals_to_telemetry(stage_ctx, addr["in"], "decode", mine))
        sub, pull = socks[0], socks[1]
        got, attempt = None, 0
        # a refusal that comes before the hub's subscription has reached the reporter is not
        # published (PUB/SUB); each attempt is a new stranger, whose first refusal is logged
        while got is None and attempt < 10:
            attempt += 1
            name = f"stranger{attempt}"
            _keys(tmp_path / name, "--name", name)
            server = str(tmp_path / "session" / "session.key")
            stranger = CurveSecurity.load(tmp_path / name, servers=[server])
            socks.append(transport.data_sender(other_ctx, addr["data"], security=stranger))
            transport.send(socks[-1], Message("end"))
            if sub.poll(1000):
                got = transport.recv(sub)
        assert got is not None, "no refusal on the telemetry"
        assert got.meta["stage"] == "decode" and got.meta["level"] == "warning"
        assert "refused a connection" in got.meta["text"]
        assert stranger.identity.public.decode() in got.meta["text"]
        assert not pull.poll(0)
    finally:
        for sock in socks:
            sock.close(0)
        hub.stop()
        for ctx in (hub_ctx, stage_ctx, other_ctx):
            stop_authenticator(ctx)
            ctx.destroy(linger=0)
