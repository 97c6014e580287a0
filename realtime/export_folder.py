"""The scanner's export folder: which files have appeared, and which are complete volumes.

A scanner console writes one file per volume into a folder, often over a network share, and a
file can be seen before it is complete.  :class:`ExportFolder` watches the folder with watchdog
(inotify on Linux; a polling observer for network shares, where inotify misses writes made by
another machine), and reads a file only when it is complete: when the writer closed it (inotify)
or its size has settled, and it parses with pixel data of the expected length
(:func:`replay_data.scanner_files.read_volume` raises ``IncompleteFile`` otherwise).

A file that stays incomplete, with its size unchanged, for ``broken_after_s`` is reported as
broken by name; a file that is not a volume at all (not DICOM or NIfTI, not an image) is
reported as rejected.  A file is read once; it is read again only if it is written again (a
re-export under the same name).  The source decides what a missing volume means.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rt_base.checks import check_number
from rt_base.errors import ConfigError

__all__ = ["ExportFolder", "FolderReport"]

#: how soon an incomplete file whose size has not changed is tried again (seconds)
RETRY_S = 0.2


_WRITES = ("created", "modified", "closed", "moved")


def _stamp(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)


@dataclass
class _Pending:
    size: int
    changed: float  # monotonic time of the last size change
    closed: bool = False  # the writer closed it (inotify only)
    tried: float = 0.0  # monotonic time of the last failed read (0: never tried)
    error: str = ""


@dataclass
class FolderReport:
    """What one look at the folder found.

    Attributes
    ----------
    volumes : (volume, completed, read) triples: each new complete volume
        (:class:`~replay_data.scanner_files.ScannerVolume`), the wall-clock time its file was
        last written (its mtime: when the console finished it) and when it had been read.
    broken : (path, reason) of files that stayed incomplete.
    rejected : (path, reason) of files that are not volumes.
    """

    volumes: list
    broken: list[tuple[Path, str]]
    rejected: list[tuple[Path, str]]


class ExportFolder:
    """Watches ``folder`` for volume files.

    Parameters
    ----------
    folder : the export folder (must exist).
    poll : use a polling observer (network shares) instead of inotify.
    poll_interval_s : the polling observer's period.
    settle_s : a file whose size has not changed for this long is read (when no close event
        says it is complete sooner).
    broken_after_s : an incomplete file whose size has not changed for this long is broken.
    include_existing : also take the files already in the folder when watching starts (a
        restarted session picks up where it was); otherwise only new ones.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        poll: bool = False,
        poll_interval_s: float = 0.1,
        settle_s: float = 0.05,
        broken_after_s: float = 5.0,
        include_existing: bool = True,
    ) -> None:
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise ConfigError(
                f"'scanner' must be an existing folder the scanner exports into, got "
                f"{str(folder)!r} (create it, or mount the scanner's export share there)"
            )
        self.poll = bool(poll)
        self.poll_interval_s = check_number(
            poll_interval_s, "poll_interval", minimum=0.005, maximum=10, unit="seconds"
        )
        self.settle_s = check_number(settle_s, "settle", minimum=0, maximum=60, unit="seconds")
        self.broken_after_s = check_number(
            broken_after_s, "broken_after", minimum=0.1, maximum=3600, unit="seconds"
        )
        self.include_existing = bool(include_existing)
        self._events: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._pending: dict[Path, _Pending] = {}
        self._done: dict[Path, tuple[int, int]] = {}  # path -> (size, mtime_ns) when done
        self._observer = None

    # -- watching ----------------------------------------------------------------------------
    def start(self) -> ExportFolder:
        """Start watching (and take the files already there, if asked)."""
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        folder = self

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:
                if event.is_directory:
                    return
                path = getattr(event, "dest_path", "") or event.src_path
                folder._events.put((event.event_type, os.fsdecode(path)))
                folder._wake.set()

        observer = PollingObserver(timeout=self.poll_interval_s) if self.poll else Observer()
        observer.schedule(_Handler(), str(self.folder), recursive=False)
        observer.start()
        self._observer = observer
        existing = sorted(p for p in self.folder.iterdir() if p.is_file())
        if self.include_existing:
            # a file unchanged for settle_s already is complete by the settle rule: it is read at
            # the first look, with the others in name order, not after a file the console closes
            # meanwhile (a restarted source would start the run of that newer file first)
            now, wall = time.monotonic(), time.time()
            for path in existing:
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                age = max(0.0, wall - st.st_mtime)
                self._pending[path] = _Pending(size=st.st_size, changed=now - age)
        else:
            for path in existing:
                self._finish(path)
        return self

    def stop(self) -> None:
        """Stop watching."""
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(5)
            self._observer = None

    def wait(self, timeout: float) -> None:
        """Sleep until a file event has come since the last :meth:`check`, or ``timeout`` s."""
        self._wake.wait(timeout)

    # -- reading -----------------------------------------------------------------------------
    def check(self) -> FolderReport:
        """Take the events since the last call and read every file that is now complete."""
        from replay_data.scanner_files import IncompleteFile, NotAVolume, read_volume

        # cleared before the events are taken: one that comes while this look runs wakes the
        # next wait at once (clearing after a wait could lose it and sleep a whole timeout)
        self._wake.clear()
        now = time.monotonic()
        self._take_events(now)
        report = FolderReport([], [], [])
        for path, state in list(self._pending.items()):
            try:
                st = path.stat()
            except FileNotFoundError:  # a console's temporary file, renamed or deleted
                del self._pending[path]
                continue
            if st.st_size != state.size:
                state.size, state.changed, state.tried = st.st_size, now, 0.0
            settled = now - state.changed >= self.settle_s
            if not (state.closed or settled) or (state.tried and now - state.tried < RETRY_S):
                continue
            try:
                vol = read_volume(path)
            except IncompleteFile as err:
                state.tried, state.closed, state.error = now, False, str(err)
                if now - state.changed >= self.broken_after_s:
                    report.broken.append((path, state.error))
                    self._finish(path)
                continue
            except NotAVolume as err:
                report.rejected.append((path, str(err)))
                self._finish(path)
                continue
            report.volumes.append((vol, st.st_mtime, time.time()))
            self._finish(path)
        return report

    def _finish(self, path: Path) -> None:
        self._pending.pop(path, None)
        self._done[path] = _stamp(path)

    def _rewritten(self, path: Path) -> bool:
        """Whether a file already handled has been written again since (a re-export)."""
        if _stamp(path) == self._done[path]:
            return False
        del self._done[path]
        return True

    def _take_events(self, now: float) -> None:
        while True:
            try:
                kind, name = self._events.get_nowait()
            except queue.Empty:
                return
            path = Path(name)
            if path.parent != self.folder or path.name.startswith("."):
                continue
            if path in self._done and not (kind in _WRITES and self._rewritten(path)):
                continue
            if kind == "deleted":
                self._pending.pop(path, None)
                continue
            state = self._pending.get(path)
            if state is None:
                state = self._pending[path] = _Pending(size=-1, changed=now)
            if kind in ("closed", "moved"):
                state.closed = True

    @property
    def pending(self) -> list[Path]:
        """Files seen but not yet complete."""
        return sorted(self._pending)
