"""The scanner source's status and the operator's commands (pause, resume, stop; a scanner
sets its own pace, so no speed), for :class:`realtime.stages.scanner_source.ScannerSource`."""

from __future__ import annotations

from rt_base.errors import ConfigError


class ScannerControlMixin:
    """``status``, ``control_state`` and ``apply_command`` of a scanner source; the class
    using it keeps ``counters``, ``counts``, ``folder``, ``run``, ``paused`` and ``halted``."""

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
