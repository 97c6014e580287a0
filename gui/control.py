"""The console's end of the replay source's control channel (a ZMQ REQ socket).

The source binds a REP socket at its ``control_addr`` (see :mod:`realtime.stages.source`);
:class:`ControlClient` sends one JSON command and waits a bounded time for the reply.  A source
that does not answer in time is an error, and the socket is replaced so that the next command
is not stuck behind the lost one (REQ sockets otherwise refuse to send again).
"""

from __future__ import annotations

import json
import threading
from typing import Any

import zmq

from rt_base.checks import check_address, check_number
from rt_base.errors import ConfigError, StageError
from rt_wire import transport

COMMANDS = ("pause", "resume", "speed", "stop", "state")


class ControlClient:
    """Sends operator commands to a replay source.

    Parameters
    ----------
    addr : the source's control endpoint, e.g. ``tcp://127.0.0.1:5556``.
    timeout_s : how long to wait for a reply before giving up.
    context : ZMQ context (default: the process-wide one).

    Thread-safe: one command at a time.
    """

    def __init__(
        self, addr: str, *, timeout_s: float = 2.0, context: zmq.Context | None = None
    ) -> None:
        self.addr = check_address(addr, "control_addr")
        self.timeout_s = float(check_number(timeout_s, "timeout_s", minimum=0, strict_min=True))
        self._ctx = context or zmq.Context.instance()
        self._lock = threading.Lock()
        self._sock: zmq.Socket | None = None

    def _socket(self) -> zmq.Socket:
        if self._sock is None:
            ms = max(1, int(1000 * self.timeout_s))
            # a CURVE client when the process has security (rt_wire.curve_auth.use_security)
            self._sock = transport.control_client(self._ctx, self.addr, timeout_ms=ms)
        return self._sock

    def send(self, cmd: str, value: float | None = None) -> dict[str, Any]:
        """Send ``cmd`` (one of :data:`COMMANDS`) and return the source's reply.

        Returns
        -------
        reply : ``{"ok": True, "cmd": ..., "state": {...}}``.

        Raises
        ------
        ConfigError
            ``cmd`` or ``value`` is invalid, or the source refused the command (its reason).
        StageError
            The source did not answer within ``timeout_s`` (not running, or wrong address).
        """
        if cmd not in COMMANDS:
            raise ConfigError(f"'cmd' must be one of {list(COMMANDS)}, got {cmd!r}")
        request: dict[str, Any] = {"cmd": cmd}
        if cmd == "speed":
            request["value"] = float(check_number(value, "speed", minimum=0.0))
        with self._lock:
            sock = self._socket()
            try:
                sock.send(json.dumps(request).encode())
                raw = sock.recv()
            except zmq.Again:
                self._reset()
                raise StageError(
                    f"the replay source did not answer {cmd!r} within {self.timeout_s:g} s at "
                    f"{self.addr!r}; is the session running with this control address?"
                ) from None
        try:
            reply = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise StageError(
                f"the replay source answered {cmd!r} with non-JSON {raw[:80]!r}"
            ) from None
        if not isinstance(reply, dict) or not reply.get("ok"):
            error = reply.get("error") if isinstance(reply, dict) else reply
            raise ConfigError(f"the replay source refused {cmd!r}: {error}")
        return reply

    def _reset(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    def close(self) -> None:
        """Close the socket (a later :meth:`send` opens a new one)."""
        with self._lock:
            self._reset()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
