"""The session's telemetry hub: stages publish into it, consoles and the supervisor subscribe."""

from __future__ import annotations

import threading

import zmq

from rt_wire import transport


class TelemetryHub:
    """XSUB -> XPUB forwarder on its own thread; ``stop()`` ends it."""

    def __init__(self, in_addr: str, out_addr: str, context: zmq.Context | None = None) -> None:
        self.in_addr, self.out_addr = in_addr, out_addr
        self._ctx = context or zmq.Context.instance()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="telemetry-hub", daemon=True)

    def start(self) -> TelemetryHub:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        try:
            xsub, xpub = transport.telemetry_hub(self._ctx, self.in_addr, self.out_addr)
        except BaseException as err:  # noqa: BLE001 - surfaced by start()
            self._error = err
            self._ready.set()
            return
        self._ready.set()
        poller = zmq.Poller()
        poller.register(xsub, zmq.POLLIN)
        poller.register(xpub, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                for sock, _ in poller.poll(100):
                    other = xpub if sock is xsub else xsub
                    frames = sock.recv_multipart(copy=False)
                    try:
                        other.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        pass  # a slow subscriber misses telemetry; the data path never waits
        finally:
            xsub.close()
            xpub.close()
