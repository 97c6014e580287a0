"""Recorder: writes everything that reaches the end of the data path into the session folder.

Written incrementally (appends and small files, flushed per message), so a crash loses nothing
already received.  The folder is a BIDS record (:mod:`realtime.session_layout` names every
file): the recorder writes its description files, each run's ``_events.tsv`` (the trials as
used), ``scans.tsv`` and the head-motion derivative (with --motion estimate or correct;
:mod:`realtime.stages.recorder_bids`); the source writes the received volumes
(:mod:`realtime.volume_record`).  The pipeline's own files::

    events.tsv          every run's trial events as received (run and trial columns)
    runs/RUN_raw.f32    masked scanner values, one row of V float32 per TR, appended
    runs/RUN_tr.tsv     TR index and timestamps of each row
    runs/RUN_bad.tsv    the bad (censored) volumes: index, reasons, details (JSON); created
                        with the run's first bad volume
    runs/RUN_info.json  the run as the recorder knows it (its length, TR, trials; at its end,
                        when and whether it was stopped): what a restarted recorder reads back
    trials/NNNN_response.npy, trials/NNNN_embedding.npy
    trials/NNNN_recon.png     the trial's reconstruction (when a reconstruct stage runs)
    trials/NNNN_blurry.png    its blurry low-level image ("full" mode only; in "lowlevel" mode
                              the reconstruction is the blurry image)
    retrievals.tsv      one line per trial: truth, top-k, scores, rank, latency
    recons.tsv          one line per reconstruction: truth, mode, compute time, delay after
                        decoding, backlog, image files (created with the first reconstruction)
    timing.jsonl        per message timestamps (for latency figures)
    gaps.jsonl          lost or repeated volumes / messages
    recorder.json       counts, written at the end

NNNN is the session-wide trial number (1-based, in decode order): the same trial has the same
NNNN in every file.

A recorder process restarted by the launcher rebuilds its state from these files and writes
only what they lack (:mod:`realtime.stages.recorder_resume`), so the record has each row once.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from realtime.session_layout import RecordLabels
from realtime.stages.base import Stage
from realtime.stages.recorder_bids import BidsTables
from realtime.stages.recorder_files import (
    RECON_COLUMNS,
    RETRIEVAL_COLUMNS,
    SAFE_RUN,
    buffer_of,
    check_image,
    save_npy,
    write_png,
)
from realtime.stages.recorder_health import RecorderHealth, describe_write_error
from realtime.stages.recorder_resume import ResumedRecord, gap_key, write_run_info
from rt_base import atomic
from rt_base.errors import MessageError
from rt_wire.message import Message

#: a record's labels when none are given (a recorder started alone)
DEFAULT_LABELS = {"subject": "01", "session": "01"}


class RecorderStage(Stage):
    """The data path's sink.  ``print_trials`` prints one line per decoded trial;
    ``record_labels`` are the record's BIDS subject, session and task (default sub-01 ses-01)."""

    name = "recorder"

    def __init__(
        self,
        out_dir: str | Path,
        *,
        print_trials: bool = True,
        record_labels: dict | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.out = Path(out_dir)
        (self.out / "runs").mkdir(parents=True, exist_ok=True)
        (self.out / "trials").mkdir(exist_ok=True)
        self.print_trials = print_trials
        self._files: dict[str, object] = {}
        # a restarted recorder (incarnation > 0) starts from what its files hold
        self.resumed = ResumedRecord(self.out, resume=self.recovery.incarnation > 0)
        self.runs: dict[str, dict] = dict(self.resumed.runs)
        self.n_trials = self.resumed.n_trials
        self.n_retrievals = self.resumed.n_retrievals
        self.n_recons = self.resumed.n_recons
        self.gaps: list[dict] = list(self.resumed.gaps)
        self._numbers: dict[tuple[str | None, int | None], int] = dict(self.resumed.numbers)
        self._last_number = max(self._numbers.values(), default=0)
        self._writer("events.tsv", "run\ttrial\tonset\tduration\timage_id\trepetition\tsplit\n")
        self._writer("retrievals.tsv", "\t".join(RETRIEVAL_COLUMNS) + "\n")
        labels = RecordLabels.from_dict(record_labels or DEFAULT_LABELS)
        self.bids = BidsTables(self.out, labels, resume=self.recovery.incarnation > 0)
        self.health = RecorderHealth(self.report)  # a full or slow disk never stops decoding
        if self.recovery.inputs is not None:  # acks say the last run on record whole
            self.recovery.inputs.complete_run = self.last_complete_run

    def last_complete_run(self) -> str | None:
        """The last run, in the order runs first started, whose ``run_end`` is on record."""
        ended = [(r["started"], name) for name, r in self.runs.items() if r.get("ended")]
        return max(ended)[1] if ended else None

    @classmethod
    def from_options(
        cls,
        links: dict,
        *,
        out_dir: str,
        print_trials: bool = True,
        record_labels: dict | None = None,
    ) -> RecorderStage:
        """Build from a spec: ``out_dir`` is the session folder."""
        return cls(out_dir, print_trials=print_trials, record_labels=record_labels, **links)

    def _writer(self, name: str, header: str | None = None, mode: str = "a"):
        if name not in self._files:
            path = self.out / name
            new = not path.exists() or path.stat().st_size == 0  # (killed before its header)
            fh = open(path, mode + ("b" if name.endswith(".f32") else ""))
            if header is not None and new:
                fh.write(header)
                fh.flush()
            self._files[name] = fh
        return self._files[name]

    def _line(self, name: str, text: str, key=None) -> bool:
        """Append ``text`` to file ``name``, unless the file already holds row ``key`` (written by
        this recorder's previous process); True when written."""
        if key is not None and self.resumed.has(name, key):
            return False
        fh = self._writer(name)
        fh.write(text)
        fh.flush()
        return True

    def _timing(self, msg: Message) -> None:
        """The message's timestamps, one line of ``timing.jsonl``."""
        row = {"kind": msg.kind, "run": msg.run, "index": msg.index, "t": msg.t}
        self._line("timing.jsonl", json.dumps(row) + "\n", key=(msg.kind, msg.run, msg.index))

    def status(self) -> dict:
        received = sum(r["received"] for r in self.runs.values())
        return {
            **self.counters,
            "volumes_received": received,
            "trials": self.n_retrievals,
            "reconstructions": self.n_recons,
            **self.health.status(),
        }

    def handle(self, msg: Message):
        if msg.run is not None and not SAFE_RUN.fullmatch(str(msg.run)):
            # run names become file names here: never a path, a hidden file or a device name
            raise MessageError(
                f"{msg.kind!r} of run {str(msg.run)[:80]!r}: a run name must be 1-64 letters, "
                "digits, '.', '_' or '-', starting with a letter or digit; not recorded"
            )
        handler = getattr(self, f"_on_{msg.kind}", None)
        if handler is None:
            return ()
        try:
            handler(msg)
        except OSError as err:
            self.health.failed(msg, err)
        else:
            self.health.written(msg)
        return ()

    def _on_run_start(self, msg: Message) -> None:
        if msg.run not in self.resumed.runs:  # else rebuilt from runs/RUN_info.json
            n_volumes = msg.meta.get("n_volumes")
            self.runs[msg.run] = {
                "n_volumes": None if n_volumes is None else int(n_volumes),
                "received": self.resumed.received(msg.run),
                "tr": float(msg.meta["tr"]),
                "n_trials": int(msg.meta.get("n_trials") or 0),  # unknown ahead with markers
                "started": time.time(),
                "meta": msg.meta,
            }
            write_run_info(self.out, msg.run, self.runs[msg.run])
        self._writer(f"runs/{msg.run}_tr.tsv", "index\tacquired\trecorded\n")
        self.bids.run_start(msg.run, msg.meta)

    def _on_tr(self, msg: Message) -> None:
        run = self._run_of(msg)
        raw = np.ascontiguousarray(buffer_of(msg, "raw"), np.float32)
        run["n_voxels"] = int(raw.size)
        tr_file = f"runs/{msg.run}_tr.tsv"
        if not self.resumed.has(tr_file, msg.index):  # else recorded by the previous process
            run["received"] += 1  # counted before any write: a failing disk loses no count
            self.resumed.trim_raw(msg.run, raw.nbytes)
            fh = self._writer(f"runs/{msg.run}_raw.f32")
            fh.write(raw.tobytes())
            fh.flush()
            acquired = msg.t.get("source.acquired", 0)
            self._line(tr_file, f"{msg.index}\t{acquired:.6f}\t{time.time():.6f}\n")
        self._timing(msg)
        motion = msg.meta.get("motion")
        if isinstance(motion, dict):
            self.bids.motion(msg.run, int(msg.index), motion.get("params", []), motion.get("fd"))
        bad = msg.meta.get("bad_volume")
        if isinstance(bad, dict):
            name = f"runs/{msg.run}_bad.tsv"
            self._writer(name, "index\treasons\tdetails\n")
            reasons = ",".join(str(r) for r in bad.get("reasons", []))
            details = json.dumps(bad.get("details", {}))
            self._line(name, f"{msg.index}\t{reasons}\t{details}\n", key=msg.index)

    def _run_of(self, msg: Message) -> dict:
        """What the recorder knows of the run ``msg`` belongs to (it must have started)."""
        if msg.run not in self.runs:
            raise MessageError(
                f"{msg.kind!r} {msg.index} of run {msg.run!r} reached the recorder before the "
                f"run's 'run_start' (runs started: {sorted(self.runs)})"
            )
        return self.runs[msg.run]

    def _on_trial(self, msg: Message) -> None:
        m = msg.meta
        missing = [k for k in ("onset", "duration", "image_id") if k not in m]
        if missing:
            raise MessageError(f"trial {msg.index} of run {msg.run!r} has no {missing} in its meta")
        key = (msg.run, msg.index)
        self.n_trials += not self.resumed.has("events.tsv", key)  # counted before the write
        self._line(
            "events.tsv",
            f"{msg.run}\t{msg.index}\t{m['onset']}\t{m['duration']}\t{m['image_id']}\t"
            f"{m.get('repetition', '')}\t{m.get('split', '')}\n",
            key=key,
        )
        self.bids.trial(msg.run, int(msg.index), m)

    def _trial_number(self, msg: Message) -> int:
        """Session-wide trial number NNNN (1-based, in decode order) of a run's trial."""
        key = (msg.run, msg.index)
        if key not in self._numbers:
            self._last_number += 1
            self._numbers[key] = self._last_number
        return self._numbers[key]

    def _on_response(self, msg: Message) -> None:
        response = buffer_of(msg, "response")  # checked before the trial gets a number
        n = self._trial_number(msg)
        save_npy(self.out / "trials" / f"{n:04d}_response.npy", response)

    def _on_retrieval(self, msg: Message) -> None:
        embedding, ids, scores = (buffer_of(msg, k) for k in ("embedding", "ids", "scores"))
        new = not self.resumed.has("retrievals.tsv", (msg.run, msg.index))
        self.n_retrievals += new
        n = self._trial_number(msg)
        m = msg.meta
        save_npy(self.out / "trials" / f"{n:04d}_embedding.npy", embedding)
        ids = [int(i) for i in ids]
        scores = [float(s) for s in scores]
        latency = 1e3 * (msg.t.get("decode.done", time.time()) - msg.t.get("source.acquired", 0))
        row = [
            n,
            msg.run,
            msg.index,
            m.get("image_id"),
            m.get("split"),
            m.get("repetition"),
            ids[0] if ids else "",
            m.get("rank") if m.get("rank") is not None else "",
            m.get("ways"),
            ",".join(map(str, ids)),
            ",".join(f"{s:.5f}" for s in scores),
            int(bool(m.get("truncated"))),
            f"{latency:.1f}",
        ]
        text = "\t".join("" if v is None else str(v) for v in row) + "\n"
        self._line("retrievals.tsv", text, key=(msg.run, msg.index))
        self._timing(msg)
        if self.print_trials and new:
            rank = m.get("rank")
            rank_s = f"{rank:>3d}/{m.get('ways')}" if rank is not None else "  (not in bank)"
            hit = "  hit" if rank == 1 else ""
            print(
                f"trial {n:4d}  {msg.run} #{msg.index:<3d} true {m.get('image_id'):>6}  "
                f"top-1 {ids[0] if ids else '-':>6}  rank {rank_s}  latency {latency:6.1f} ms{hit}",
                flush=True,
            )

    def _on_recon(self, msg: Message) -> None:
        """Save a trial's reconstruction (and blurry image) as PNG and log it in recons.tsv."""
        image = check_image(msg, "image")  # both checked before anything is written
        blurry = check_image(msg, "blurry") if "blurry" in msg.buffers else None
        n = self._trial_number(msg)
        new = not self.resumed.has("recons.tsv", (msg.run, msg.index))
        m, t = msg.meta, msg.t
        recon_file = f"trials/{n:04d}_recon.png"
        write_png(self.out / recon_file, image)
        blurry_file = ""
        if blurry is not None:
            blurry_file = f"trials/{n:04d}_blurry.png"
            write_png(self.out / blurry_file, blurry)
        self.n_recons += new
        compute_ms = m.get("compute_ms")
        delay_ms = None
        if "reconstruct.done" in t and "decode.done" in t:
            delay_ms = 1e3 * (t["reconstruct.done"] - t["decode.done"])
        row = [
            n,
            msg.run,
            msg.index,
            m.get("image_id"),
            m.get("mode"),
            f"{float(compute_ms):.2f}" if compute_ms is not None else None,
            f"{delay_ms:.2f}" if delay_ms is not None else None,
            m.get("backlog"),
            recon_file,
            blurry_file,
        ]
        self._writer("recons.tsv", "\t".join(RECON_COLUMNS) + "\n")
        text = "\t".join("" if v is None else str(v) for v in row) + "\n"
        self._line("recons.tsv", text, key=(msg.run, msg.index))
        self._timing(msg)
        if self.print_trials and new:
            ms = f"{float(compute_ms):7.1f} ms" if compute_ms is not None else "      - ms"
            delay = f"  delay {delay_ms:7.1f} ms" if delay_ms is not None else ""
            backlog = f"  backlog {m['backlog']}" if m.get("backlog") else ""
            print(
                f"recon {n:4d}  {msg.run} #{msg.index!s:<3s} {m.get('mode', '?')}  {ms}{delay}"
                f"{backlog}",
                flush=True,
            )

    def _on_gap(self, msg: Message) -> None:
        record = {"run": msg.run, **msg.meta, "time": time.time()}
        key = gap_key(record)
        if self.resumed.has("gaps.jsonl", key):
            return  # recorded by the previous process
        self.gaps.append(record)
        self._line("gaps.jsonl", json.dumps(record) + "\n", key=key)
        print(f"WARNING: {json.dumps(record)}", file=sys.stderr, flush=True)

    def _on_run_end(self, msg: Message) -> None:
        run = self.runs.get(msg.run)
        if run is not None:
            run["ended"] = time.time()
            if run["n_volumes"] is None:  # a scanner run of unknown length: known at its end
                run["n_volumes"] = int(msg.meta.get("n_volumes") or run["received"])
            if msg.meta.get("stopped"):  # an operator stopped the replay: count what was sent
                run["n_volumes"] = int(msg.meta.get("n_volumes_sent", run["n_volumes"]))
                run["stopped"] = True
            write_run_info(self.out, msg.run, run)
        for suffix in ("_tr.tsv", "_raw.f32", "_bad.tsv"):  # a long session keeps no run's open
            fh = self._files.pop(f"runs/{msg.run}{suffix}", None)
            if fh is not None:
                fh.close()
        self.bids.run_end(msg.run)

    def finish(self):
        info = {
            "runs": {
                name: {k: v for k, v in r.items() if k != "meta"} for name, r in self.runs.items()
            },
            "trials": self.n_trials,
            "retrievals": self.n_retrievals,
            "reconstructions": self.n_recons,
            "volumes_received": sum(r["received"] for r in self.runs.values()),
            "volumes_expected": sum(r["n_volumes"] or r["received"] for r in self.runs.values()),
            "gaps": self.gaps,
            "counters": self.counters,
            **self.health.status(),
            "finished": time.time(),
        }
        try:
            atomic.write_json(self.out / "recorder.json", info)
        except OSError as err:
            self.report("error", f"recorder.json not written: {describe_write_error(err)}")
        for fh in self._files.values():
            try:
                fh.close()
            except OSError:  # its last buffered lines: the failure is reported already
                pass
        self._files.clear()
        self.bids.close()
        return ()
