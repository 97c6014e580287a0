"""CURVE links: key files, the allow-list, and sockets across two loopback addresses.

Linux routes all of 127.0.0.0/8 to ``lo``, so a server on 127.0.0.2 and a client from
127.0.0.1 are two hosts as far as ZMQ is concerned; CURVE is forced on (they are loopback).
"""

from __future__ import annotations

import logging
import os
import stat
import time

import numpy as np
import pytest
import zmq

from rt_base.errors import ConfigError
from rt_wire import transport
from rt_wire.curve_auth import (
    CurveSecurity,
    add_refusal_reporter,
    is_loopback,
    remote_addresses,
    stop_authenticator,
    use_security,
)
from rt_wire.curve_keys import (
    allow_key,
    allowed_keys,
    create_key_pair,
    load_identity,
    public_key,
    read_certificate,
)
from rt_wire.message import Message

SERVER_HOST = "127.0.0.2"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((SERVER_HOST, 0))
        return s.getsockname()[1]


@pytest.fixture
def machines(tmp_path):
    """Key directories of a server, an allowed client and a stranger; the two trust each other."""
    dirs = {}
    for name in ("server", "client", "stranger"):
        d = tmp_path / name
        create_key_pair(d, name)
        dirs[name] = d
    allow_key(dirs["server"], dirs["client"] / "client.key")
    allow_key(dirs["client"], dirs["server"] / "server.key")
    allow_key(dirs["stranger"], dirs["server"] / "server.key")
    return dirs


@pytest.fixture
def contexts():
    made = []

    def make():
        made.append(zmq.Context())
        return made[-1]

    yield make
    for ctx in made:
        stop_authenticator(ctx)
        ctx.destroy(linger=0)


def _security(dirs, name):
    servers = [] if name == "server" else [f"{SERVER_HOST}=server"]
    return CurveSecurity.load(dirs[name], name, servers)


def _msg(i: int) -> Message:
    return Message("volume", run="run-01", index=i, buffers={"volume": np.full((2, 3), i, "f4")})


# -- key files --------------------------------------------------------------------------------
def test_key_pair_modes_and_identity(tmp_path):
    public, secret = create_key_pair(tmp_path / "keys", "scanner")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    ident = load_identity(tmp_path / "keys")
    assert ident.name == "scanner" and len(ident.public) == 40 and len(ident.secret) == 40
    assert read_certificate(public, secret=False) == (ident.public, None)
    with pytest.raises(ConfigError, match="already exists"):
        create_key_pair(tmp_path / "keys", "scanner")


def test_secret_readable_by_others_is_refused(tmp_path):
    _, secret = create_key_pair(tmp_path, "m")
    os.chmod(secret, 0o644)
    with pytest.raises(ConfigError, match=r"mode 0644.*chmod 600"):
        load_identity(tmp_path, "m")


@pytest.mark.parametrize(
    "case, match",
    [
        ("missing dir", "does not exist"),
        ("missing secret", "no secret key"),
        ("malformed", "malformed"),
        ("two secrets", "exactly one secret"),
    ],
)
def test_clear_key_errors(tmp_path, case, match):
    d = tmp_path / "keys"
    if case == "missing dir":
        with pytest.raises(ConfigError, match=match):
            load_identity(d)
        return
    create_key_pair(d, "a")
    if case == "missing secret":
        with pytest.raises(ConfigError, match=match):
            load_identity(d, "b")
    elif case == "malformed":
        text = (d / "a.key_secret").read_text().replace('secret-key = "', 'secret-key = "xx')
        (d / "a.key_secret").write_text(text)
        with pytest.raises(ConfigError, match=match):
            load_identity(d, "a")
    else:
        create_key_pair(d, "b")
        with pytest.raises(ConfigError, match=match):
            load_identity(d)


def test_allow_list(machines, tmp_path):
    keys = allowed_keys(machines["server"])
    client = load_identity(machines["client"])
    assert keys == {client.public: "client.key"}
    with pytest.raises(ConfigError, match="secret certificate"):
        allow_key(machines["server"], machines["client"] / "client.key_secret")
    bad = tmp_path / "bad.key"
    bad.write_text('curve\n    public-key = "short"\n')
    with pytest.raises(ConfigError, match="malformed"):
        allow_key(machines["server"], bad)
    assert public_key(machines["client"], "server") == load_identity(machines["server"]).public
    with pytest.raises(ConfigError, match="neither a machine name"):
        public_key(machines["client"], "nobody")


def test_loopback_detection():
    for addr in (
        "tcp://127.0.0.1:5550",
        "tcp://127.0.0.2:1",
        "tcp://localhost:1",
        "tcp://[::1]:5",
        "ipc:///tmp/x",
        "inproc://a",
    ):
        assert is_loopback(addr), addr
    for addr in ("tcp://10.0.0.5:5550", "tcp://*:5550", "tcp://0.0.0.0:1", "tcp://scanner:1"):
        assert not is_loopback(addr), addr
    assert remote_addresses(["tcp://127.0.0.1:1", "tcp://10.1.1.1:2"]) == ["tcp://10.1.1.1:2"]


# -- sockets ----------------------------------------------------------------------------------
def test_push_pull_with_curve_across_two_addresses(machines, contexts):
    addr = f"tcp://{SERVER_HOST}:{_free_port()}"
    server_ctx, client_ctx = contexts(), contexts()
    pull = transport.data_receiver(server_ctx, addr, security=_security(machines, "server"))
    push = transport.data_sender(client_ctx, addr, security=_security(machines, "client"))
    assert pull.curve_server and push.getsockopt(zmq.MECHANISM) == zmq.CURVE
    for i in range(5):
        transport.send(push, _msg(i))
    got = []
    while len(got) < 5 and pull.poll(5000):
        got.append(transport.recv(pull))
    assert [m.index for m in got] == list(range(5))
    assert np.array_equal(got[3].buffers["volume"], np.full((2, 3), 3, "f4"))
    push.close(0)
    pull.close(0)


def test_pub_sub_with_curve_through_the_process_default(machines, contexts):
    addr = f"tcp://{SERVER_HOST}:{_free_port()}"
    server_ctx, client_ctx = contexts(), contexts()
    with use_security(_security(machines, "server")):
        pub = transport.display_publisher(server_ctx, addr, bind=True)
    with use_security(_security(machines, "client")):
        sub = transport.display_subscriber(client_ctx, addr, ("volume",))
    got = None
    deadline = time.monotonic() + 10
    while got is None and time.monotonic() < deadline:  # a subscription takes a moment to arrive
        transport.try_publish(pub, _msg(7))
        if sub.poll(100):
            got = transport.recv(sub)
    assert got is not None and got.index == 7
    sub.close(0)
    pub.close(0)


def test_client_not_allowed_receives_nothing_and_is_logged(machines, contexts, caplog, monkeypatch):
    # import-linter's in-process run (test_architecture) disables the loggers existing then
    monkeypatch.setattr(logging.getLogger("mindeye_rt.auth"), "disabled", False)
    addr = f"tcp://{SERVER_HOST}:{_free_port()}"
    server_ctx, client_ctx = contexts(), contexts()
    reported = []
    add_refusal_reporter(server_ctx, reported.append)
    with caplog.at_level(logging.WARNING, logger="mindeye_rt.auth"):
        pub = transport.display_publisher(
            server_ctx, addr, bind=True, security=_security(machines, "server")
        )
        sub = transport.display_subscriber(
            client_ctx, addr, security=_security(machines, "stranger")
        )
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            transport.try_publish(pub, _msg(1))
            assert not sub.poll(50), "a client without an allowed key received a message"
    stranger = load_identity(machines["stranger"]).public.decode()
    assert reported and stranger in reported[0] and "127.0.0.1" in reported[0]
    refusals = [r for r in caplog.records if "refused a connection" in r.getMessage()]
    assert len(refusals) == 1  # repeats of one key are not logged again at once
    sub.close(0)
    pub.close(0)


def test_key_allowed_during_a_session_counts_from_its_next_try(machines, contexts):
    addr = f"tcp://{SERVER_HOST}:{_free_port()}"
    server_ctx, client_ctx = contexts(), contexts()
    pull = transport.data_receiver(server_ctx, addr, security=_security(machines, "server"))
    time.sleep(0.05)  # the allow-list folder's time stamp must change
    allow_key(machines["server"], machines["stranger"] / "stranger.key")
    push = transport.data_sender(client_ctx, addr, security=_security(machines, "stranger"))
    transport.send(push, _msg(2))
    assert pull.poll(5000) and transport.recv(pull).index == 2
    push.close(0)
    pull.close(0)


def test_control_channel_with_curve(machines, contexts):
    """The source's REP control socket: an allowed client gets its reply, a stranger none."""
    addr = f"tcp://{SERVER_HOST}:{_free_port()}"
    server_ctx, client_ctx = contexts(), contexts()
    rep = transport.control_server(server_ctx, addr, security=_security(machines, "server"))
    req = transport.control_client(
        client_ctx, addr, timeout_ms=5000, security=_security(machines, "client")
    )
    req.send(b'{"cmd": "state"}')
    assert rep.poll(5000) and rep.recv() == b'{"cmd": "state"}'
    rep.send(b'{"ok": true}')
    assert req.recv() == b'{"ok": true}'
    stranger = transport.control_client(
        client_ctx, addr, timeout_ms=1000, security=_security(machines, "stranger")
    )
    stranger.send(b'{"cmd": "stop"}')  # queued for a connection that is never made
    with pytest.raises(zmq.Again):
        stranger.recv()
    assert not rep.poll(200)  # the stop never reached the source
    for sock in (stranger, req, rep):
        sock.close(0)
