"""LSL outlets of the session's results, for the stimulus program that gives feedback.

Two streams, named from a prefix (default ``mindeye-rt``), with source ids that stay the same
from one session to the next on a machine, so an inlet reconnects after a restart:

``PREFIX-topk`` (type ``MindEyeTopK``)
    one float32 sample per decoded trial, channels ``run`` (1-based, in the order runs came),
    ``trial`` (index within the run), ``image_id`` (the image shown; -1 if none), ``id_1`` ..
    ``id_K`` (the top-K image ids, best first), ``score_1`` .. ``score_K``.  Ids are integers
    (exact in float32 below 2**24).  Irregular rate; readable by pylsl and mne-lsl.
``PREFIX-results`` (type ``MindEyeResults``)
    one JSON string per event: ``{"v": 1, "type": "retrieval", "run", "trial", "image_id",
    "onset", "top_ids", "top_scores", "rank", "in_bank", "latency_ms"}`` per decoded trial, and
    ``{"v": 1, "type": "reconstruction", "run", "trial", "image_id", "path", "mode"}`` once a
    reconstruction's PNG is on disk (``path`` absolute; the viewer keeps receiving the images
    over ZMQ).

The outlet is a telemetry subscriber (like the operator console) in its own thread, so it
never slows the data path; reconstructions are announced from the recorder's ``recons.tsv``,
which is written after the image file.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from pathlib import Path

import zmq

from rt_base.errors import ConfigError, WireError
from rt_wire import transport

__all__ = [
    "DEFAULT_PREFIX",
    "RESULTS_SCHEMA_VERSION",
    "RESULTS_TYPE",
    "TOPK_TYPE",
    "ResultsOutlet",
    "check_results_prefix",
    "topk_channels",
]

DEFAULT_PREFIX = "mindeye-rt"
TOPK_TYPE = "MindEyeTopK"
RESULTS_TYPE = "MindEyeResults"
RESULTS_SCHEMA_VERSION = 1
_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_results_prefix(prefix: str, name: str = "lsl_results") -> str:
    """``prefix`` if it can name the result streams (letters, digits, ``_.-``), else
    ConfigError naming option ``name``."""
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise ConfigError(
            f"'{name}' must be a stream name prefix of letters, digits, '_', '.' or '-' "
            f"(up to 64), e.g. {DEFAULT_PREFIX!r}, got {prefix!r}"
        )
    return prefix


def topk_channels(k: int) -> list[str]:
    """The channel labels of the top-k stream."""
    return [
        "run",
        "trial",
        "image_id",
        *(f"id_{i + 1}" for i in range(k)),
        *(f"score_{i + 1}" for i in range(k)),
    ]


class ResultsOutlet:
    """Publishes each decoded trial (and each reconstruction) on the two LSL streams.

    Parameters
    ----------
    telemetry : the session's telemetry endpoint (the hub's output, as a console connects).
    top_k : K, the candidates per trial (the decode stage's ``top_k``).
    prefix : the streams' name prefix.
    session_dir : the session folder, whose ``recons.tsv`` announces reconstructions (None:
        none announced).
    """

    def __init__(
        self,
        telemetry: str,
        *,
        top_k: int = 5,
        prefix: str = DEFAULT_PREFIX,
        session_dir: str | Path | None = None,
    ) -> None:
        self.telemetry = telemetry
        self.top_k = int(top_k)
        self.prefix = check_results_prefix(prefix)
        self.session_dir = None if session_dir is None else Path(session_dir)
        self.sent = {"retrievals": 0, "reconstructions": 0}
        self._runs: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._recons_read = 0  # bytes of recons.tsv already announced
        self.topk = self.results = None

    def streams(self) -> dict[str, tuple[str, str, str]]:
        """name -> (type, source id, format) of each stream."""
        host = socket.gethostname()
        return {
            f"{self.prefix}-topk": (TOPK_TYPE, f"{self.prefix}-topk@{host}", "float32"),
            f"{self.prefix}-results": (RESULTS_TYPE, f"{self.prefix}-results@{host}", "string"),
        }

    def start(self) -> ResultsOutlet:
        """Create the outlets and subscribe; returns at once (the work is in a thread)."""
        import pylsl

        (topk_name, (topk_type, topk_id, _)), (res_name, (res_type, res_id, _)) = (
            self.streams().items()
        )
        channels = topk_channels(self.top_k)
        info = pylsl.StreamInfo(
            topk_name, topk_type, len(channels), pylsl.IRREGULAR_RATE, pylsl.cf_float32, topk_id
        )
        chans = info.desc().append_child("channels")
        for label in channels:
            ch = chans.append_child("channel")
            ch.append_child_value("label", label)
            ch.append_child_value("type", "misc")
        self.topk = pylsl.StreamOutlet(info)
        info = pylsl.StreamInfo(
            res_name, res_type, 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, res_id
        )
        info.desc().append_child_value("schema_version", str(RESULTS_SCHEMA_VERSION))
        self.results = pylsl.StreamOutlet(info)
        ctx = zmq.Context.instance()
        self._sub = transport.display_subscriber(ctx, self.telemetry, ("retrieval",), hwm=10000)
        self._thread = threading.Thread(target=self._main, name="lsl-results", daemon=True)
        self._thread.start()
        return self

    def stop(self, drain_s: float = 0.5) -> None:
        """Publish what is still queued (up to ``drain_s`` of quiet), then close."""
        self._drain_s = drain_s
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10 + drain_s)
        self.topk = self.results = None

    def _main(self) -> None:
        quiet_since = None
        try:
            while True:
                got = self._sub.poll(50)
                if got:
                    quiet_since = None
                    self._receive()
                self._announce_recons()
                if self._stop.is_set() and not got:
                    quiet_since = quiet_since or time.monotonic()
                    if time.monotonic() - quiet_since >= self._drain_s:
                        break
        finally:
            self._sub.close()

    def _receive(self) -> None:
        try:
            msg = transport.recv(self._sub)
        except WireError:
            return
        if msg.kind == "retrieval":
            self.publish_retrieval(msg)

    def publish_retrieval(self, msg) -> None:
        """Push one ``retrieval`` message on both streams."""
        ids = [int(i) for i in msg.buffers["ids"][: self.top_k]]
        scores = [float(s) for s in msg.buffers["scores"][: self.top_k]]
        ids += [-1] * (self.top_k - len(ids))
        scores += [float("nan")] * (self.top_k - len(scores))
        m = msg.meta
        image = m.get("image_id")
        run_number = self._runs.setdefault(msg.run, len(self._runs) + 1)
        image_value = -1 if image is None else int(image)
        self.topk.push_sample([run_number, int(msg.index), image_value, *ids, *scores])
        acquired = msg.t.get("source.acquired")
        latency = None
        if acquired and "decode.done" in msg.t:
            latency = round(1e3 * (msg.t["decode.done"] - acquired), 1)
        detail = {
            "v": RESULTS_SCHEMA_VERSION,
            "type": "retrieval",
            "run": msg.run,
            "trial": int(msg.index),
            "image_id": image,
            "onset": m.get("onset"),
            "top_ids": ids,
            "top_scores": [round(s, 6) for s in scores],
            "rank": m.get("rank"),
            "in_bank": m.get("in_bank"),
            "latency_ms": latency,
        }
        self.results.push_sample([json.dumps(detail)])
        self.sent["retrievals"] += 1

    def _announce_recons(self) -> None:
        """One notice per new complete line of ``recons.tsv`` (its image is on disk)."""
        if self.session_dir is None:
            return
        path = self.session_dir / "recons.tsv"
        try:
            with open(path, "rb") as fh:
                fh.seek(self._recons_read)
                chunk = fh.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n") + 1
        if not end:
            return
        lines = chunk[:end].decode().splitlines()
        if self._recons_read == 0:
            self._header = lines.pop(0).split("\t")
        self._recons_read += end
        for line in lines:
            row = dict(zip(self._header, line.split("\t"), strict=False))
            notice = {
                "v": RESULTS_SCHEMA_VERSION,
                "type": "reconstruction",
                "run": row.get("run"),
                "trial": int(row["trial"]) if row.get("trial", "").isdigit() else row.get("trial"),
                "image_id": int(row["image_id"]) if row.get("image_id", "").isdigit() else None,
                "path": str((self.session_dir / row.get("recon_file", "")).resolve()),
                "mode": row.get("mode"),
            }
            self.results.push_sample([json.dumps(notice)])
            self.sent["reconstructions"] += 1


def start_results_outlet(cfg, session_dir: Path, log=print) -> ResultsOutlet | None:
    """The session's result outlets when ``cfg`` asks for them (``lsl_results``, or
    ``markers``: the program that sends markers wants results), started; else None."""
    if cfg.lsl_results is None and cfg.markers is None:
        return None
    prefix = cfg.lsl_results or DEFAULT_PREFIX
    outlet = ResultsOutlet(
        cfg.addresses()["telemetry"], top_k=cfg.top_k, prefix=prefix, session_dir=session_dir
    ).start()
    names = ", ".join(f"{n} ({t[0]})" for n, t in outlet.streams().items())
    log(f"results on LSL: {names}")
    return outlet
