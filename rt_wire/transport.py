"""Thin ZMQ adapters: sockets that send and receive :class:`~rt_wire.message.Message`.

The data path uses PUSH/PULL: a full queue blocks the sender (back-pressure) instead of dropping,
so nothing is lost silently.  Display subscribers use PUB/SUB with a small high-water mark: a
slow console misses frames but can never stall the data path.

Each factory takes ``security`` (:class:`~rt_wire.curve_auth.CurveSecurity`; default: the
process's, :func:`~rt_wire.curve_auth.use_security`): with one, the socket that binds is a CURVE
server and the one that connects a CURVE client (see :mod:`rt_wire.curve_auth`).
"""

from __future__ import annotations

import zmq

from rt_base.errors import StageError
from rt_wire.curve_auth import CurveSecurity, secure_client, secure_server
from rt_wire.message import Message, decode, encode

DATA_HWM = 2000  # messages queued per data link before the sender blocks
DISPLAY_HWM = 50  # telemetry messages queued per subscriber before they are dropped


def data_receiver(
    ctx: zmq.Context, addr: str, *, bind: bool = True, security: CurveSecurity | None = None
) -> zmq.Socket:
    """A PULL socket for the data path (binds by default: downstream owns its address)."""
    sock = ctx.socket(zmq.PULL)
    sock.setsockopt(zmq.RCVHWM, DATA_HWM)
    sock.setsockopt(zmq.LINGER, 0)
    _attach(sock, addr, bind, ctx, security)
    return sock


def data_sender(
    ctx: zmq.Context, addr: str, *, bind: bool = False, security: CurveSecurity | None = None
) -> zmq.Socket:
    """A PUSH socket for the data path (connects by default; queues until the peer binds)."""
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.SNDHWM, DATA_HWM)
    sock.setsockopt(zmq.LINGER, 2000)
    _attach(sock, addr, bind, ctx, security)
    return sock


def display_publisher(
    ctx: zmq.Context, addr: str, *, bind: bool = False, security: CurveSecurity | None = None
) -> zmq.Socket:
    """A PUB socket for telemetry (connects to the session's telemetry hub by default)."""
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.SNDHWM, DISPLAY_HWM)
    sock.setsockopt(zmq.LINGER, 200)  # long enough for a stage's final status to leave
    _attach(sock, addr, bind, ctx, security)
    return sock


def display_subscriber(
    ctx: zmq.Context,
    addr: str,
    topics: tuple[str, ...] = ("",),
    *,
    hwm: int = DISPLAY_HWM,
    security: CurveSecurity | None = None,
) -> zmq.Socket:
    """A SUB socket on the telemetry hub, receiving ``topics`` with high-water mark ``hwm``."""
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.LINGER, 0)
    for topic in topics:
        sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
    _attach(sock, addr, False, ctx, security)
    return sock


def control_server(
    ctx: zmq.Context, addr: str, *, security: CurveSecurity | None = None
) -> zmq.Socket:
    """The REP socket a source binds for the operator's control requests."""
    sock = ctx.socket(zmq.REP)
    sock.setsockopt(zmq.LINGER, 0)
    _attach(sock, addr, True, ctx, security)
    return sock


def control_client(
    ctx: zmq.Context, addr: str, *, timeout_ms: int, security: CurveSecurity | None = None
) -> zmq.Socket:
    """A REQ socket to a source's control channel; sends and receives give up after
    ``timeout_ms`` (:class:`zmq.Again`)."""
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
    sock.setsockopt(zmq.SNDTIMEO, timeout_ms)
    _attach(sock, addr, False, ctx, security)
    return sock


def _attach(
    sock: zmq.Socket,
    addr: str,
    bind: bool,
    ctx: zmq.Context,
    security: CurveSecurity | None,
) -> None:
    """Set CURVE up (when there is security) and bind or connect; closes ``sock`` on failure."""
    try:
        if bind:
            secure_server(sock, ctx, security)
        else:
            secure_client(sock, addr, security)
    except BaseException:
        sock.close(0)
        raise
    try:
        if bind:
            sock.bind(addr)
        else:
            sock.connect(addr)
    except zmq.ZMQError as err:
        sock.close(0)
        verb = "bind to" if bind else "connect to"
        hint = (
            " (is another session using this port? pick another with --base-port)" if bind else ""
        )
        raise StageError(f"cannot {verb} {addr!r}: {err}{hint}") from None


def send(sock: zmq.Socket, msg: Message, *, flags: int = 0) -> None:
    """Send one message; libzmq copies the buffers.

    Zero-copy sends (``copy=False``) crashed a source process with a segmentation fault in
    libzmq's I/O thread when its downstream pushed back (full queue, retried sends) while the
    same volumes were also published to telemetry; the root cause was not isolated.  A copy
    costs well under a millisecond for an NSD-size volume (2.8 MB), and is what pyzmq advises
    for frames below tens of kB anyway.
    """
    sock.send_multipart(encode(msg), flags=flags, copy=True)


def try_publish(sock: zmq.Socket, msg: Message) -> bool:
    """Publish without ever blocking; returns False when the message was dropped."""
    try:
        send(sock, msg, flags=zmq.NOBLOCK)
        return True
    except zmq.Again:
        return False


def recv(sock: zmq.Socket, *, flags: int = 0) -> Message:
    """Receive and validate one message (raises WireError on a bad frame)."""
    return decode(sock.recv_multipart(flags=flags, copy=False))


def telemetry_hub(
    ctx: zmq.Context, in_addr: str, out_addr: str, *, security: CurveSecurity | None = None
) -> tuple[zmq.Socket, zmq.Socket]:
    """XSUB (stages publish into ``in_addr``) and XPUB (consoles subscribe at ``out_addr``)."""
    xsub = ctx.socket(zmq.XSUB)
    xpub = ctx.socket(zmq.XPUB)
    xpub.setsockopt(zmq.SNDHWM, DISPLAY_HWM)
    for sock in (xsub, xpub):
        sock.setsockopt(zmq.LINGER, 0)
    try:
        _attach(xsub, in_addr, True, ctx, security)
    except BaseException:
        xpub.close(0)
        raise
    try:
        _attach(xpub, out_addr, True, ctx, security)
    except BaseException:
        xsub.close(0)
        raise
    return xsub, xpub
