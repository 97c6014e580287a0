"""Estimate: each trial's response from a sliding-window LSS GLM, at a fixed decode delay."""

from __future__ import annotations

from realtime.stages.base import Stage
from rt_base.checks import check_number
from rt_base.errors import StageError
from rt_wire.message import Message


class EstimateStage(Stage):
    """Turns normalized TRs and trial events into one ``response`` per trial.

    A trial is estimated as soon as the volume acquired ``decode_delay_s`` after its onset has
    arrived (the *decode point*), from a window of recent volumes only, so the cost per trial
    does not grow over the run.  Trials whose decode point lies past the end of the run are
    estimated at ``run_end`` from what there is, and flagged ``truncated``.
    """

    name = "estimate"
    publish_kinds = frozenset({"trial", "response"})

    def __init__(
        self,
        n_voxels: int,
        *,
        decode_delay_s: float = 8.0,
        window_s: float | None = None,
        hrf_peak: float = 6.0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.n_voxels = check_number(n_voxels, "n_voxels", minimum=1, integer=True)
        self.decode_delay_s = check_number(
            decode_delay_s,
            "decode_delay",
            minimum=0.0,
            strict_min=True,
            maximum=30.0,
            unit="seconds",
        )
        self.window_s = window_s
        self.hrf_peak = hrf_peak
        self.glm = None
        self.run: str | None = None
        self.trials: dict[int, Message] = {}
        self.pending: set[int] = set()
        self.estimated = 0

    def status(self) -> dict:
        return {
            **self.counters,
            "run": self.run,
            "estimated": self.estimated,
            "pending": len(self.pending),
        }

    def handle(self, msg: Message):
        if msg.kind == "run_start":
            from fmri_compute.online_glm import OnlineTrialBetas

            # standardize: the GLM keeps its own running statistics of the raw masked values,
            # so every row of a window shares one scale (better for a run's first trials).
            kwargs = {
                "decode_delay_s": self.decode_delay_s,
                "hrf_peak": self.hrf_peak,
                "standardize": True,
            }
            if self.window_s is not None:
                kwargs["window_s"] = self.window_s
            self.glm = OnlineTrialBetas(self.n_voxels, float(msg.meta["tr"]), **kwargs)
            self.run = msg.run
            self.trials.clear()
            self.pending.clear()
            return [msg]
        if msg.kind == "trial":
            self.glm.add_trial(int(msg.index), msg.meta["onset"], msg.meta["duration"])
            self.trials[int(msg.index)] = msg
            self.pending.add(int(msg.index))
            return [msg]
        if msg.kind == "tr":
            self.glm.add_volume(int(msg.index), msg.buffers["raw"])
            outs = [msg]
            for trial in self.glm.due(int(msg.index)):
                outs.append(self._response(trial, msg, truncated=False))
            return outs
        if msg.kind == "run_end":
            outs = []
            for trial in sorted(self.pending):
                if trial in self.glm.missed:
                    continue
                try:
                    outs.append(self._response(trial, msg, truncated=True))
                except StageError as err:  # no volume after its onset: cannot be estimated
                    self.log.warning("trial %s of %s not estimated: %s", trial, self.run, err)
            for trial in sorted(set(self.glm.missed) & self.pending):
                self.pending.discard(trial)
                outs.append(msg.derive("gap", meta={"stage": self.name, "missed_trials": [trial]}))
            outs.append(msg)
            return outs
        return [msg]

    def _response(self, trial: int, trigger: Message, *, truncated: bool) -> Message:
        beta = self.glm.estimate(trial, partial=truncated)
        self.pending.discard(trial)
        self.estimated += 1
        event = self.trials[trial]
        t = dict(trigger.t)  # latency runs from the acquisition of the volume that triggered it
        t["trial.onset_sent"] = event.t.get("source.acquired", 0.0)
        return Message(
            "response",
            run=self.run,
            index=trial,
            meta={**event.meta, "decode_index": trigger.index, "truncated": truncated},
            t=t,
            buffers={"response": beta.astype("float32", copy=False)},
        )
