"""The session model's handlers of stage status and log messages, and each stage's health.

Every stage publishes a ``status`` about once a second; a stage's health is judged from how
recent its last one is, whether it was final, and whether an error was reported lately (an
``errors`` count that went up, or an error ``log`` line).  The reconstruct stage is optional
(``--recon none``): its health and backlog are reported only once a status from it has been
seen in the current session, so a session without one shows no reconstruct stage at all.
"""

from __future__ import annotations

from gui.model_state import ModelState
from gui.state import ReconStage, StageHealth
from gui.values import as_float, as_int, status_behind
from rt_base.names import OPTIONAL_STAGES, STAGE_NAMES
from rt_wire.message import Message

ERROR_HOLD_S = 10.0  # an error log keeps its stage marked "error" this long


class HealthFeed(ModelState):
    """Handlers of ``status`` and ``log``, and :meth:`health`."""

    def _on_status(self, msg: Message) -> None:
        stage = msg.meta.get("stage")
        if not isinstance(stage, str):
            return
        prev = self._status.get(stage)
        errors = as_int(msg.meta.get("errors")) or 0
        entry = {"time": self._clock(), "meta": dict(msg.meta), "error_time": None}
        if prev is not None:
            entry["error_time"] = prev["error_time"]
            if errors > (as_int(prev["meta"].get("errors")) or 0):
                entry["error_time"] = self._clock()
        self._status[stage] = entry
        if stage == "source":
            s = self.session
            s.paused = msg.meta.get("paused", s.paused)
            s.speed = as_float(msg.meta.get("speed")) if "speed" in msg.meta else s.speed
            path = msg.meta.get("dataset_path")
            if path and self._dataset is None:
                self._use_dataset(str(path))  # a console that joined after run_start
        self._versions["session"] += 1

    def _on_log(self, msg: Message) -> None:
        stage = str(msg.meta.get("stage", "?"))
        level = str(msg.meta.get("level", "info"))
        self.add_log(stage, level, str(msg.meta.get("text", "")))
        if level == "error" and stage in self._status:
            self._status[stage]["error_time"] = self._clock()

    def health(self) -> dict[str, StageHealth]:
        """Each stage's health now (see :class:`~gui.state.StageHealth`): the pipeline's stages
        in data-path order (an optional one only once it reported), then any other reporter."""
        with self._lock:
            now = self._clock()
            out: dict[str, StageHealth] = {}
            for name in (*STAGE_NAMES, *sorted(set(self._status) - set(STAGE_NAMES))):
                entry = self._status.get(name)
                if entry is None:
                    if name not in OPTIONAL_STAGES:  # e.g. no reconstruct stage: not shown
                        out[name] = StageHealth(name)
                    continue
                out[name] = self._stage_health(name, entry, now)
            return out

    def _stage_health(self, name: str, entry: dict, now: float) -> StageHealth:
        """The health of stage ``name`` whose latest status is ``entry``, at time ``now``."""
        age = now - entry["time"]
        meta = entry["meta"]
        errors = as_int(meta.get("errors")) or 0
        bad = as_int(meta.get("bad")) or 0  # messages refused and dropped; the stage went on
        counts = [f"{errors} error(s)"] if errors else []
        counts += [f"{bad} bad message(s) dropped"] if bad else []
        detail = ", ".join(counts)
        if entry["error_time"] is not None and now - entry["error_time"] < ERROR_HOLD_S:
            state = "error"
        elif meta.get("final") or (self.session.ended and age > self.stale_s):
            state = "stopped"  # stages exit after the session's end
        elif age > self.stale_s:
            state = "stale"
            detail = f"no status for {age:.0f} s"
        else:
            state = "ok"
        behind = status_behind(meta)
        if behind and state != "stopped":
            detail = f"{detail}, {behind}" if detail else behind
        return StageHealth(name, state, age, detail)

    def _recon_stage(self, health: dict[str, StageHealth]) -> ReconStage | None:
        """The reconstruct stage's latest status; None when none was seen this session."""
        entry = self._status.get("reconstruct")
        if entry is None:
            return None
        meta = entry["meta"]
        mode = meta.get("mode")
        return ReconStage(
            state=health["reconstruct"].state,
            backlog=max(0, as_int(meta.get("backlog")) or 0),
            behind_s=as_float(meta.get("behind_s")),
            reconstructed=as_int(meta.get("reconstructed")) or 0,
            compute_ms=as_float(meta.get("compute_ms")),
            mode=mode if isinstance(mode, str) else None,
        )
