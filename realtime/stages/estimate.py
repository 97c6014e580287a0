"""Estimate: each trial's response from a sliding-window ridge-LSA GLM, at a fixed decode delay."""

from __future__ import annotations

import numpy as np

from fmri_compute.online_glm import OnlineTrialBetas
from realtime.stages.base import Stage
from rt_base.checks import check_number
from rt_base.errors import ConfigError, MessageError, StageError
from rt_wire.message import Message


class EstimateStage(Stage):
    """Turns normalized TRs and trial events into one ``response`` per trial.

    A trial is estimated as soon as the volume acquired ``decode_delay_s`` after its onset has
    arrived (the *decode point*), from a window of recent volumes only, so the cost per trial
    does not grow over the run.  Trials whose decode point lies past the end of the run are
    estimated at ``run_end`` from what there is, and flagged ``truncated``.

    Censoring: a ``tr`` whose meta carries ``bad_volume`` (set by the preprocess stage), or
    whose ``raw`` holds NaN or Inf, keeps its TR slot but is left out of every window's fit and
    of the running statistics (:class:`~fmri_compute.online_glm.OnlineTrialBetas`,
    ``censored=True``).  A trial whose window had censored frames is still estimated from the
    rest; its ``response`` meta lists them (``censored_frames``) and says ``degraded`` when one
    of them lies in the trial's own response (at or after its onset).  A trial whose every
    volume after onset is missing or censored cannot be estimated: it is reported as a
    ``gap`` with ``missed_trials``.
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
        self.censored = 0
        self.degraded = 0

    @classmethod
    def from_options(
        cls,
        links: dict,
        *,
        n_voxels: int,
        decode_delay: float = 8.0,
        window: float | None = None,
    ) -> EstimateStage:
        """Build from a spec: ``decode_delay`` and ``window`` in seconds (see the class)."""
        stage = cls(n_voxels, decode_delay_s=decode_delay, window_s=window, **links)
        stage.warm_up()
        return stage

    def warm_up(self, tr: float = 1.6) -> None:
        """Estimate two trials of a throwaway run of noise, so the first trial of the session
        does not pay for first-call set-up (the solver's, the HRF tables')."""
        import numpy as np

        glm = OnlineTrialBetas(
            self.n_voxels,
            tr,
            decode_delay_s=self.decode_delay_s,
            hrf_peak=self.hrf_peak,
            standardize=True,
            **({} if self.window_s is None else {"window_s": self.window_s}),
        )
        rng = np.random.default_rng(0)
        glm.add_trial(0, 2.0, 3.0)
        glm.add_trial(1, 6.0, 3.0)
        for k in range(int((6.0 + self.decode_delay_s) / tr) + 2):
            glm.add_volume(k, rng.standard_normal(self.n_voxels).astype("float32"))
            for trial in glm.due(k):
                glm.estimate(trial)

    def status(self) -> dict:
        return {
            **self.counters,
            "run": self.run,
            "estimated": self.estimated,
            "pending": len(self.pending),
            "censored": self.censored,
            "degraded": self.degraded,
        }

    def handle(self, msg: Message):
        if msg.kind == "run_start":
            return self._run_start(msg)
        if msg.kind == "trial":
            return self._trial(msg)
        if msg.kind == "tr":
            return self._tr(msg)
        if msg.kind == "run_end":
            return self._run_end(msg)
        return [msg]

    def _run_start(self, msg: Message):
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

    def _check_in_run(self, msg: Message) -> int:
        """The message's index, once it is known to belong to the current run."""
        if self.glm is None or msg.run != self.run:
            raise MessageError(
                f"a {msg.kind!r} of run {msg.run!r} reached the estimate stage outside its run "
                f"(the current run is {self.run!r}): the run's 'run_start' must come first"
            )
        if msg.kind != "run_end" and msg.index is None:
            raise MessageError(f"a {msg.kind!r} of run {msg.run!r} must carry an index, got None")
        return -1 if msg.index is None else int(msg.index)

    def _trial(self, msg: Message):
        index = self._check_in_run(msg)
        missing = [k for k in ("onset", "duration") if k not in msg.meta]
        if missing:
            raise MessageError(f"trial {index} of run {msg.run!r} has no {missing} in its meta")
        try:  # the GLM's rules (a trial once, a number for its onset) make a trial bad
            self.glm.add_trial(index, msg.meta["onset"], msg.meta["duration"])
        except ConfigError as err:
            raise MessageError(f"trial {index} of run {msg.run!r} dropped: {err}") from err
        self.trials[index] = msg
        self.pending.add(index)
        return [msg]

    def _tr(self, msg: Message):
        index = self._check_in_run(msg)
        if "raw" not in msg.buffers:
            raise MessageError(f"TR {index} of run {msg.run!r} has no 'raw' buffer")
        raw = msg.buffers["raw"]
        censored = bool(msg.meta.get("bad_volume"))
        if not censored and raw.dtype.kind == "f" and not np.isfinite(raw).all():
            censored = True  # never into the fit, whoever let it through
            self.report("warning", f"{msg.run} TR {index}: NaN/Inf in 'raw' not flagged: censored")
        try:  # the GLM's rules (increasing index, one value per voxel) make a TR bad
            self.glm.add_volume(index, raw, censored=censored)
        except ConfigError as err:
            raise MessageError(f"TR {index} of run {msg.run!r} dropped: {err}") from err
        self.censored += censored
        outs = [msg]
        for trial in self.glm.due(index):
            try:
                outs.append(self._response(trial, msg, truncated=False))
            except StageError as err:  # every volume after its onset missing or censored
                self.pending.discard(trial)
                self.log.warning("trial %s of %s not estimated: %s", trial, self.run, err)
                outs.append(msg.derive("gap", meta={"stage": self.name, "missed_trials": [trial]}))
        return outs

    def _run_end(self, msg: Message):
        self._check_in_run(msg)
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

    def _response(self, trial: int, trigger: Message, *, truncated: bool) -> Message:
        beta = self.glm.estimate(trial, partial=truncated)
        self.pending.discard(trial)
        self.estimated += 1
        event = self.trials[trial]
        t = dict(trigger.t)  # latency runs from the acquisition of the volume that triggered it
        t["trial.onset_sent"] = event.t.get("source.acquired", 0.0)
        meta = {**event.meta, "decode_index": trigger.index, "truncated": truncated}
        censored = self.glm.censored_frames(trial)
        if censored:  # (absent when the window is clean: clean sessions' messages unchanged)
            onset_index = float(event.meta["onset"]) / self.glm.tr
            meta["censored_frames"] = censored
            meta["degraded"] = any(k >= onset_index for k in censored)
            self.degraded += meta["degraded"]
        return Message(
            "response",
            run=self.run,
            index=trial,
            meta=meta,
            t=t,
            buffers={"response": beta.astype("float32", copy=False)},
        )
