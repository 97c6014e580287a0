"""CURVE on the session's sockets: when it is needed, the settings, and the authenticator.

Links stay plain while every address is loopback (127.0.0.0/8, ``::1``, ``localhost``, ipc://,
inproc://): nothing to set up.  As soon as one leaves loopback, or the user forces it, every
socket of the session uses CURVE: the side that binds is a CURVE server whose process runs one
:class:`zmq.auth.thread.ThreadAuthenticator` per ZMQ context, checking each client's public key
against the allow-list (``DIR/allowed/*.key``, plus the machine's own key: a machine always
trusts itself); the side that connects is a CURVE client with its own key pair and the server's
public key.  A refused client is logged (logger ``mindeye_rt.auth``, warning, with its key and
address; repeats of one key at most every :data:`REPEAT_LOG_S`) and handed to the context's
refusal reporters (a stage publishes it to the consoles).

A command sets its process's security for as long as it runs (:func:`use_security`); the socket
factories of :mod:`rt_wire.transport` read it when not given one.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import zmq
from zmq.auth.thread import ThreadAuthenticator

from rt_base.errors import ConfigError
from rt_wire.curve_keys import CurveIdentity, allowed_keys, load_identity, public_key

log = logging.getLogger("mindeye_rt.auth")
REPEAT_LOG_S = 30.0  # a refused client retries every ~100 ms: one log line per key this often
LOOPBACK_NAMES = ("localhost", "ip6-localhost")


def is_loopback(addr: str) -> bool:
    """True when the ZMQ endpoint ``addr`` cannot be reached from another machine."""
    scheme, _, rest = addr.partition("://")
    if scheme in ("inproc", "ipc"):
        return True
    host = rest.split(";")[-1].rsplit(":", 1)[0].strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name, '*' or an interface: reachable from elsewhere


def remote_addresses(addresses: Iterable[str]) -> list[str]:
    """The endpoints of ``addresses`` that leave loopback."""
    return [a for a in addresses if a and not is_loopback(a)]


@dataclass(frozen=True)
class CurveSecurity:
    """One process's CURVE settings.

    Parameters
    ----------
    key_dir : the key directory (``mindeye-rt keys DIR``).
    identity : this machine's key pair.
    server_keys : the public key of the server a client connects to, by host (``"*"``: any
        host not listed).  Without one, a client expects the server to be this machine.
    """

    key_dir: Path
    identity: CurveIdentity
    server_keys: Mapping[str, bytes] = field(default_factory=dict)

    @classmethod
    def load(
        cls, key_dir: str | Path, name: str | None = None, servers: Iterable[str] = ()
    ) -> CurveSecurity:
        """Read the key pair and resolve ``servers`` (``"REF"`` or ``"HOST=REF"``; REF a machine
        name in the key directory or its allow-list, or a certificate file)."""
        identity = load_identity(key_dir, name)
        keys: dict[str, bytes] = {}
        for item in servers:
            host, _, ref = item.rpartition("=") if "=" in item else ("*", "", item)
            if not host or not ref:
                raise ConfigError(f"'server_key' takes NAME or HOST=NAME, got {item!r}")
            keys[host] = public_key(identity.path.parent, ref)
        return cls(Path(identity.path.parent), identity, keys)

    def to_options(self) -> dict:
        """JSON-able options that :meth:`from_options` rebuilds this from (for a child
        process)."""
        return {
            "keys": str(self.key_dir),
            "key_name": self.identity.name,
            "server_keys": {h: k.decode("ascii") for h, k in self.server_keys.items()},
        }

    @classmethod
    def from_options(cls, options: Mapping) -> CurveSecurity:
        identity = load_identity(options["keys"], options.get("key_name"))
        servers = {h: str(k).encode("ascii") for h, k in options.get("server_keys", {}).items()}
        return cls(Path(options["keys"]), identity, servers)

    def server_key_for(self, addr: str) -> bytes:
        """The public key a client connecting to ``addr`` expects of the server."""
        host = addr.partition("://")[2].split(";")[-1].rsplit(":", 1)[0].strip("[]")
        return self.server_keys.get(host, self.server_keys.get("*", self.identity.public))

    def allowed(self) -> dict[bytes, str]:
        """The client keys a server accepts: the allow-list and this machine's own key."""
        return {**allowed_keys(self.key_dir), self.identity.public: f"{self.identity.name} (self)"}


# -- the process's security --------------------------------------------------------------------
_current: CurveSecurity | None = None


def current_security() -> CurveSecurity | None:
    """The security this process's sockets use by default (None: plain links)."""
    return _current


@contextlib.contextmanager
def use_security(security: CurveSecurity | None) -> Iterator[CurveSecurity | None]:
    """Make ``security`` the process's default for the ``with`` block."""
    global _current
    old, _current = _current, security
    try:
        yield security
    finally:
        _current = old


# -- sockets -------------------------------------------------------------------------------------
def secure_server(
    sock: zmq.Socket, ctx: zmq.Context, security: CurveSecurity | None = None
) -> None:
    """Make ``sock`` (before it binds) a CURVE server checked by the context's authenticator;
    nothing when there is no security."""
    security = security or _current
    if security is None:
        return
    ensure_authenticator(ctx, security)
    sock.curve_secretkey = security.identity.secret
    sock.curve_publickey = security.identity.public
    sock.curve_server = True


def secure_client(sock: zmq.Socket, addr: str, security: CurveSecurity | None = None) -> None:
    """Make ``sock`` (before it connects to ``addr``) a CURVE client; nothing without
    security."""
    security = security or _current
    if security is None:
        return
    sock.curve_secretkey = security.identity.secret
    sock.curve_publickey = security.identity.public
    sock.curve_serverkey = security.server_key_for(addr)


# -- the authenticator ---------------------------------------------------------------------------
class _AllowList:
    """zmq.auth's CURVE credentials provider: the allow-list, re-read when it changes, and the
    refusals logged and reported."""

    def __init__(self, security: CurveSecurity, reporters: list[Callable[[str], None]]) -> None:
        self.security = security
        self.reporters = reporters
        self.keys = security.allowed()
        self._stamp = self._folder_stamp()
        self.peer = "?"  # the address of the request being checked (set by the authenticator)
        self._last_logged: dict[bytes, float] = {}
        self.refused = 0

    def _folder_stamp(self) -> float:
        folder = self.security.key_dir / "allowed"
        return folder.stat().st_mtime if folder.is_dir() else 0.0

    def callback(self, domain: str, key: bytes) -> bool:
        if key not in self.keys and self._folder_stamp() != self._stamp:
            try:  # a peer allowed during the session counts from its next try
                self.keys, self._stamp = self.security.allowed(), self._folder_stamp()
            except ConfigError as err:
                log.error("allow-list not re-read, the old one stays: %s", err)
        if key in self.keys:
            return True
        self.refused += 1
        now = time.monotonic()
        if now - self._last_logged.get(key, -REPEAT_LOG_S) >= REPEAT_LOG_S:
            self._last_logged[key] = now
            text = (
                f"refused a connection from {self.peer}: its CURVE key {key.decode('ascii')} "
                f"is not in the allow-list {self.security.key_dir / 'allowed'} (allow it with "
                "`mindeye-rt keys DIR --allow PEER.key`)"
            )
            log.warning(text)
            for report in list(self.reporters):
                try:
                    report(text)
                except Exception as err:  # noqa: BLE001 - reporting must not stop checking
                    log.error("refusal reporter failed: %s", err)
        return False


class _Authenticator(ThreadAuthenticator):
    """A ThreadAuthenticator that tells the allow-list which address is asking."""

    allow_list: _AllowList

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        if len(msg) > 3:  # ZAP request: version, id, domain, address, identity, mechanism, ...
            self.allow_list.peer = msg[3].decode("ascii", "replace")
        await super().handle_zap_message(msg)


_lock = threading.Lock()
_authenticators: dict[int, tuple[zmq.Context, _Authenticator]] = {}
_reporters: dict[int, list[Callable[[str], None]]] = {}


def ensure_authenticator(ctx: zmq.Context, security: CurveSecurity) -> _AllowList:
    """Start the authenticator of ``ctx`` (once per context) and return its allow-list."""
    with _lock:
        entry = _authenticators.get(id(ctx))
        if entry is not None and entry[0] is ctx:
            return entry[1].allow_list
        auth = _Authenticator(ctx)
        auth.allow_list = _AllowList(security, _reporters.setdefault(id(ctx), []))
        auth.start()
        auth.configure_curve_callback("*", auth.allow_list)
        _authenticators[id(ctx)] = (ctx, auth)
        return auth.allow_list


def add_refusal_reporter(ctx: zmq.Context, report: Callable[[str], None]) -> Callable[[], None]:
    """Call ``report(text)`` for each logged refusal by ``ctx``'s authenticator (called on the
    authenticator's thread); returns the function that removes it again."""
    with _lock:
        reporters = _reporters.setdefault(id(ctx), [])
        reporters.append(report)

    def remove() -> None:
        with _lock:
            if report in reporters:
                reporters.remove(report)

    return remove


def stop_authenticator(ctx: zmq.Context) -> None:
    """Stop ``ctx``'s authenticator, if any (before ``ctx.term()``, which it would block)."""
    with _lock:
        entry = _authenticators.pop(id(ctx), None)
        _reporters.pop(id(ctx), None)
    if entry is not None:
        entry[1].stop()


@atexit.register
def _stop_all() -> None:
    for ctx, _ in list(_authenticators.values()):
        stop_authenticator(ctx)
