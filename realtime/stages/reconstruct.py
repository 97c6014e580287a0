"""Reconstruct: draws every decoded trial (blurry low-level image, optionally a generated one).

It sits between decode and the recorder.  Everything except ``latent`` messages is passed on at
once (retrievals never wait for a reconstruction); each ``latent`` is queued and reconstructed
by a worker thread, in order, and its ``recon`` is sent on (and published to the console) when
ready.  No trial is skipped: when the worker falls behind, the stage says so in its status
(``backlog``, ``behind_s``) and in warnings, and the session's end waits for the queue to drain.

A ``run_end`` that arrives while trials are queued waits in the queue behind them and is sent on
after their ``recon``s; the stage's upstream is released at it only then (``Recovery.hold``), so
a restart of this stage never loses a trial it had queued (docs/interfaces.md, "Restarts").

Trial numbers (``full`` mode seeds ``seed + number``) count the session's trials in decode
order.  With ``numbers_file`` (the process launcher gives ``logs/reconstruct_numbers.json``) the
number each run starts from is kept on disk at its ``run_start``, so a restarted stage, sent its
unreleased runs again from their ``run_start``, numbers their trials as before: the same seeds.
"""

from __future__ import annotations

import collections
import json
import queue
import threading
import time
from pathlib import Path

import numpy as np

from mindeye_models.recon_options import ReconOptions, resolve_mode
from realtime.stages.base import Stage
from rt_base import atomic
from rt_base.checks import check_number
from rt_base.debug import reraise_background_errors
from rt_base.errors import MessageError
from rt_wire.message import Message

_DONE = object()


class ReconstructStage(Stage):
    """Runs a :class:`mindeye_models.reconstructor.Reconstructor` on each trial's ``latent``.

    Parameters
    ----------
    reconstructor : callable ``(tokens, response, number) -> ReconstructionOutput``
        with an ``options`` attribute (:class:`mindeye_models.recon_options.ReconOptions`).
    warn_backlog : trials waiting at which the stage warns that it is falling behind (and again
        each time the backlog doubles), provided they also hold ``warn_seconds`` of work.
    warn_seconds : seconds of queued work (trials waiting x median compute time) below which a
        backlog is a burst, not a lag (at ``--speed 0`` trials arrive in bursts), and no warning
        is given; the status always reports the backlog.
    generator : name of the generator, recorded in each ``recon``'s meta.
    numbers_file : where the number each run's trials start from is kept (JSON ``{run: n}``),
        read back by a restarted stage (incarnation > 0); None: kept in memory only.
    """

    name = "reconstruct"
    publish_kinds = frozenset({"recon"})
    poll_ms = 5
    #: the per-trial options a spec may give (the fields of ReconOptions)
    extra_spec_options = tuple(ReconOptions.names())

    def __init__(
        self,
        reconstructor,
        *,
        warn_backlog: int = 2,
        warn_seconds: float = 1.0,
        generator: str | None = None,
        numbers_file: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.reconstructor = reconstructor
        self.options = reconstructor.options
        self.generator = generator
        self.warn_backlog = check_number(warn_backlog, "warn_backlog", minimum=1, integer=True)
        self.warn_seconds = float(check_number(warn_seconds, "warn_seconds", minimum=0))
        self._jobs: queue.Queue = queue.Queue()
        self._waiting: collections.deque[float] = collections.deque()  # decode.done of queued
        self._outbox: collections.deque[Message] = collections.deque()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._busy = False
        self._queued = 0
        self._ends_queued = 0  # run_ends waiting in the queue behind trials (stage thread only)
        self.numbers_file = None if numbers_file is None else Path(numbers_file)
        self._run_starts: dict[str, int] = {}  # run -> trials numbered before it
        if self.numbers_file is not None and self.recovery.incarnation > 0:
            if self.numbers_file.is_file():
                kept = json.loads(self.numbers_file.read_text())
                self._run_starts = {str(k): int(v) for k, v in kept.items()}
        self._warned_at = 0
        self.reconstructed = 0
        self.failed = 0
        self.compute_ms: list[float] = []

    @classmethod
    def from_options(
        cls,
        links: dict,
        *,
        bundle: str,
        generator: str | None = None,
        warn_backlog: int = 2,
        warn_seconds: float = 1.0,
        numbers_file: str | None = None,
        **recon,
    ) -> ReconstructStage:
        """Build from a spec: loads the reconstruction ``bundle`` (and in ``full`` mode the
        ``generator``) before the stage starts; ``recon`` are :class:`ReconOptions` fields.

        Raises
        ------
        ConfigError
            Bad options, or mode ``full`` without a generator (checked before loading).
        """
        options = ReconOptions(**recon)
        full = resolve_mode(options.mode, generator) == "full"
        # the models (and torch) load only once the options are known to be good
        from mindeye_models.recon_bundle import load_bundle
        from mindeye_models.reconstructor import Reconstructor, load_generator

        loaded = load_bundle(bundle, device=options.device)
        pipe = None
        if full:
            pipe = load_generator(
                generator,
                embed_dim=loaded.token_shape[1],
                device=options.device,
                dtype=options.dtype,
            )
        return cls(
            Reconstructor(loaded, options, pipe),
            warn_backlog=warn_backlog,
            warn_seconds=warn_seconds,
            generator=generator if full else None,
            numbers_file=numbers_file,
            **links,
        )

    # -- lifecycle: the worker thread lives as long as the stage -----------------------------
    def start(self) -> ReconstructStage:
        self._worker = threading.Thread(target=self._work, name="reconstruct-worker", daemon=True)
        self._worker.start()
        try:
            super().start()
        except BaseException:
            self._jobs.put(_DONE)
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._jobs.put(_DONE)
        super().stop(timeout)

    # -- the data path -------------------------------------------------------------------------
    @property
    def backlog(self) -> int:
        """Trials queued and not yet started."""
        with self._lock:
            return len(self._waiting)

    def status(self) -> dict:
        with self._lock:
            oldest = self._waiting[0] if self._waiting else None
            backlog = len(self._waiting)
        recent = self.compute_ms[-20:]
        return {
            **self.counters,
            "mode": self.options.mode,
            "reconstructed": self.reconstructed,
            "failed": self.failed,
            "backlog": backlog,
            "behind_s": round(time.time() - oldest, 3) if oldest is not None else None,
            "compute_ms": float(np.median(recent)) if recent else None,
        }

    def _pending(self) -> bool:
        """Whether trials (or run_ends) are queued, in work, or done and not yet sent on."""
        with self._lock:
            return bool(self._waiting or self._busy or self._outbox or self._ends_queued)

    def _number_run(self, run: str) -> None:
        """At a run's start: its trials are numbered from where they were the first time."""
        if run in self._run_starts:
            self._queued = self._run_starts[run]  # a run sent again to a restarted stage
            return
        self._run_starts[run] = self._queued
        if self.numbers_file is not None:
            atomic.write_json(self.numbers_file, self._run_starts)

    def handle(self, msg: Message):
        if msg.kind == "run_start" and msg.run is not None:
            self._number_run(msg.run)
        if msg.kind == "run_end" and self._pending():
            self.recovery.hold(msg)  # released once sent on, after the run's recons
            self._ends_queued += 1
            self._jobs.put(msg)
            return ()
        if msg.kind != "latent":
            return [msg]
        for name, ndim in (("tokens", 2), ("response", 1)):
            buf = msg.buffers.get(name)
            if buf is None or buf.ndim != ndim:
                got = None if buf is None else buf.shape
                raise MessageError(
                    f"the latent of run {msg.run!r} trial {msg.index} must have a {ndim}-D "
                    f"{name!r} buffer, got {got}"
                )
        self._queued += 1
        msg.meta["number"] = self._queued
        with self._lock:
            self._waiting.append(msg.t.get("decode.done", time.time()))
            backlog = len(self._waiting)
        self._jobs.put(msg)
        recent = self.compute_ms[-20:]
        work_s = backlog * (float(np.median(recent)) if recent else 0.0) / 1e3
        if backlog >= max(self.warn_backlog, 2 * self._warned_at) and work_s >= self.warn_seconds:
            self._warned_at = backlog
            text = (
                f"reconstruction is falling behind: {backlog} trials waiting (about "
                f"{work_s:.1f} s of work); every trial is still reconstructed"
            )
            self.report("warning", text)
        return ()

    def idle(self):
        out, errors = [], []
        with self._lock:
            while self._outbox:
                item = self._outbox.popleft()
                (errors if isinstance(item, Exception) else out).append(item)
                if isinstance(item, Message) and item.kind == "run_end":
                    self._ends_queued -= 1
            caught_up = self._warned_at and not self._waiting and not self._busy
        for err in errors:  # the socket thread reports (ZMQ sockets are not thread-safe)
            self.failed += 1
            if isinstance(err, MessageError):
                self.reject(err)
                continue
            self.counters["errors"] += 1
            self.log.error("reconstruction failed: %r", err)
            self._publish_log("error", f"reconstruction failed: {type(err).__name__}: {err}")
            if reraise_background_errors():
                raise err
        if caught_up:
            self._warned_at = 0
            self._publish_log("info", "reconstruction caught up (no trials waiting)")
        return out

    def finish(self):
        """At the session's end: wait until every queued trial is reconstructed."""
        out = []
        while True:
            with self._lock:
                done = not self._waiting and not self._busy and self._jobs.empty()
            out += self.idle()
            if done and not self._ends_queued:
                break
            if self._worker is None or not self._worker.is_alive():
                break
            self._maybe_status()
            time.sleep(0.01)
        return out

    # -- the worker ------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            msg = self._jobs.get()
            if msg is _DONE:
                return
            if msg.kind != "latent":  # a run_end queued behind its run's trials
                with self._lock:
                    self._outbox.append(msg)
                continue
            with self._lock:
                self._waiting.popleft()
                self._busy = True
            try:
                out = self.reconstruct(msg)
            except Exception as err:  # noqa: BLE001 - reported by the stage thread (idle)
                out = err
            with self._lock:
                self._outbox.append(out)
                self._busy = False

    def reconstruct(self, msg: Message) -> Message:
        """Reconstruct one queued ``latent`` (what the worker runs for each); its ``recon``."""
        started = time.time()
        number = int(msg.meta["number"])
        result = self.reconstructor(msg.buffers["tokens"], msg.buffers["response"], number)
        done = time.time()
        compute_ms = 1e3 * (done - started)
        self.compute_ms.append(compute_ms)
        self.reconstructed += 1
        opt = self.options
        full = opt.mode == "full"
        meta = {k: v for k, v in msg.meta.items() if k != "number"}
        meta.update(
            mode=opt.mode,
            compute_ms=round(compute_ms, 3),
            parts_ms={k: round(v, 3) for k, v in result.timings_ms.items()},
            backlog=self.backlog,
            generator=self.generator if full else None,
            steps=opt.steps if full else None,
            strength=opt.strength if full else None,
            prior_steps=opt.prior_steps if full else None,
            seed=opt.seed + number,
        )
        buffers = {"image": np.ascontiguousarray(result.image, np.uint8)}
        if result.blurry is not None:
            buffers["blurry"] = np.ascontiguousarray(result.blurry, np.uint8)
        out = msg.derive("recon", meta=meta, buffers=buffers)
        out.t["reconstruct.started"] = started
        out.t["reconstruct.done"] = done
        return out
