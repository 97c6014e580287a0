"""The scanner source's status, the operator's commands (pause, resume, stop; a scanner
sets its own pace, so no speed) and when the session is over, for
:class:`realtime.stages.scanner_source.ScannerSource`."""

from __future__ import annotations

import time

from rt_base.errors import ConfigError


class ScannerControlMixin:
    """``status``, ``control_state``, ``apply_command`` and ``_session_over`` of a scanner
    source; the class using it keeps ``counters``, ``counts``, ``folder``, ``run``, ``paused``,
    ``halted``, ``early``, ``design``, ``finished`` and the idle clock."""

    def status(self) -> dict:
        return {
            **self.counters,
            **self.counts,
            **self._marker_status(),
            **self.control_state(),
            "folder": str(self.folder.folder),
            "pending_files": len(self.folder.pending),
        }

    def control_state(self) -> dict:
        return {
            "run": None if self.run is None else self.run.name,
            "paused": self.paused,
            "speed": None,
            "stopping": self.halted,
            "volumes": self.counts["volumes"],
        }

    def apply_command(self, cmd: str, value: float | None) -> None:
        if cmd == "speed":
            raise ConfigError("the scanner sets the pace: 'speed' applies to replays only")
        if cmd in ("pause", "resume"):
            self.paused = cmd == "pause"
        elif cmd == "stop":
            self.halted = True

    def _session_over(self) -> bool:
        """After the operator's stop; or with no run streaming (nor volumes held for one's
        start) once every design run is done, or no new series came for ``idle_timeout_s``."""
        if self.halted:
            return True
        if self.run is not None or self.early.held:
            return False
        if self.design is not None and len(self.finished) >= len(self.design_runs):
            return True
        return time.monotonic() - self._idle_since > self.idle_timeout_s
