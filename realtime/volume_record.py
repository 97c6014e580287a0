"""The received volumes on record: a source's messages, written to the session's BIDS bold
files after each one is sent.

:meth:`VolumeRecord.tap` wraps a source's message generator.  Each message is yielded (sent)
first and recorded after, so writing never delays a volume; ``run_start`` opens the run's
growing ``_bold.nii`` (:class:`replay_data.growing_nifti.GrowingNifti`) and writes its
``_bold.json``, each ``volume`` is appended at its index (a volume that never came is stored as
zeros and listed in the sidecar's ``missing_volumes``), and ``run_end`` closes the file and
compresses it to ``_bold.nii.gz`` on a background thread at the lowest CPU priority (the next
run streams meanwhile; ``benchmarks/bench_record.py`` measures both).  The session's ``end`` is
sent only once every run's compression has finished.

What a crash leaves: the run that was streaming as ``_bold.nii`` holding every volume whose
header update was written; a run being compressed as its complete ``_bold.nii`` (and perhaps a
hidden ``.partial-*`` file to delete).  Never a truncated ``.nii.gz``.  Readers take the
``.nii.gz`` when there is one, else the ``.nii`` (:meth:`SessionLayout.bold_file`).

A write that fails (a full disk) is reported to the operator and ends the recording of that
run; the session's data path goes on.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator

import numpy as np

from realtime.record_sidecars import bold_sidecar
from realtime.session_layout import RecordLabels, RunNumbers, SessionLayout
from replay_data.growing_nifti import GrowingNifti, compress_nifti
from rt_base import atomic
from rt_wire.message import Message
from rt_wire.volume import volume_values

#: the ``run_start`` fields copied into the bold sidecar's ``MindEyeRT`` object
_RUN_INFO = ("dataset", "simulated", "series", "format", "folder")


class _RunFile:
    def __init__(self, name: str, number: int, nifti: GrowingNifti, tr: float, meta: dict):
        self.name, self.number, self.nifti, self.tr = name, number, nifti, tr
        self.source = meta.get("input")
        self.info = {k: meta[k] for k in _RUN_INFO if meta.get(k) is not None}
        self.info["affine"] = np.asarray(meta["affine"], float).tolist()  # exact (NIfTI: float32)


class VolumeRecord:
    """Writes the volumes of a source's runs under ``record_dir`` (see the module's docstring).

    Parameters
    ----------
    record_dir : the session folder.
    labels : the record's subject, session and task.
    notice : ``notice(level, text)``: where failures are reported (the source's log).
    """

    def __init__(
        self,
        record_dir,
        labels: RecordLabels,
        notice: Callable[[str, str], None] | None = None,
    ) -> None:
        self.layout = SessionLayout(record_dir, labels)
        self.numbers = RunNumbers()
        self.notice = notice or (lambda level, text: None)
        self.run: _RunFile | None = None
        self.compressing: list[threading.Thread] = []
        self.failures: list[str] = []

    def tap(self, messages: Iterator[Message]) -> Iterator[Message]:
        """Yield ``messages`` unchanged, recording each after it is sent (``end`` waits for
        the compressions)."""
        try:
            for msg in messages:
                if msg.kind == "end":
                    self.close()
                yield msg
                self.take(msg)
        finally:
            self.abort()

    def take(self, msg: Message) -> None:
        """Record one message (any kind; only run_start, volume and run_end write)."""
        try:
            if msg.kind == "run_start":
                self._start(msg)
            elif msg.kind == "volume":
                self._add(msg)
            elif msg.kind == "run_end":
                self._end(msg)
        except (OSError, ValueError) as err:
            self._fail(msg.run, err)

    def _start(self, msg: Message) -> None:
        self.abort()  # a run never ended: keep its .nii as is
        meta = msg.meta
        number = self.numbers.number(msg.run)
        nifti = GrowingNifti(
            self.layout.bold_nii(number),
            meta["shape"],
            np.asarray(meta["affine"], float),
            float(meta["tr"]),
            description=f"mindeye-rt run {msg.run}",
        )
        self.run = _RunFile(msg.run, number, nifti, float(meta["tr"]), meta)
        self.layout.func_dir.mkdir(parents=True, exist_ok=True)
        self._write_sidecar(self.run)

    def _add(self, msg: Message) -> None:
        run = self.run
        if run is None or msg.run != run.name or "volume" not in msg.buffers:
            return
        if int(msg.index) < run.nifti.n_volumes:
            return  # a repeat of a frame on record
        missing = len(run.nifti.missing)
        run.nifti.append(volume_values(msg.buffers["volume"], msg.meta), int(msg.index))
        if len(run.nifti.missing) != missing:  # a hole: say so now, in case of a crash
            self._write_sidecar(run)

    def _end(self, msg: Message) -> None:
        run = self.run
        if run is None or msg.run != run.name:
            return
        self.run = None
        meta = msg.meta
        n = meta.get("n_volumes_sent") if meta.get("stopped") else meta.get("n_volumes")
        run.nifti.pad_to(int(n or 0))
        run.nifti.close()
        if run.nifti.n_volumes == 0:  # a run without a volume has no bold file
            self.layout.bold_json(run.number).unlink(missing_ok=True)
            return
        self._write_sidecar(run)
        worker = threading.Thread(
            target=self._compress, args=(run,), name=f"compress-{run.name}", daemon=False
        )
        worker.start()
        self.compressing.append(worker)

    def _compress(self, run: _RunFile) -> None:
        try:  # the lowest CPU priority (Linux: per thread), so the next run's volumes come first
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except (AttributeError, OSError):
            pass
        try:
            compress_nifti(self.layout.bold_nii(run.number), self.layout.bold_gz(run.number))
        except (OSError, ValueError) as err:
            self._fail(run.name, err, f"{self.layout.bold_nii(run.number).name} stays as is")

    def _write_sidecar(self, run: _RunFile) -> None:
        sidecar = bold_sidecar(
            self.layout,
            run=run.name,
            tr=run.tr,
            source=run.source,
            missing=run.nifti.missing,
            info=run.info,
        )
        atomic.write_json(self.layout.bold_json(run.number), sidecar)

    def _fail(self, run: str | None, err: Exception, what: str = "") -> None:
        text = f"recording the volumes of run {run} failed: {err}" + (f"; {what}" if what else "")
        self.failures.append(text)
        self.notice("error", text)
        if self.run is not None and self.run.name == run:
            self.abort()

    def close(self) -> None:
        """Wait for every compression (the session is ending)."""
        self.abort()
        for worker in self.compressing:
            worker.join()
        self.compressing.clear()

    def abort(self) -> None:
        """Close a run left open (the source stopped mid-run): its ``.nii`` stays readable."""
        run, self.run = self.run, None
        if run is not None:
            try:
                run.nifti.close()
            except OSError as err:
                self.failures.append(f"closing {run.nifti.path.name}: {err}")


def open_volume_record(record_dir, record_labels: dict | None, notice) -> VolumeRecord | None:
    """The record a source writes (None when it has no ``record_labels``: a session that does
    not keep its volumes, or a stage started alone without them)."""
    if record_dir is None or record_labels is None:
        return None
    return VolumeRecord(record_dir, RecordLabels.from_dict(record_labels), notice)
