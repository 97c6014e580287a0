"""Preprocess: check each volume, correct head motion, mask it to the ROI and z-score it online
(no look-ahead).  Motion correction: :mod:`realtime.stages.preprocess_motion`; the volume
checks: :mod:`fmri_compute.volume_checks`."""

from __future__ import annotations

import numpy as np

from fmri_compute.normalize import RunningZScore
from fmri_compute.volume_checks import REASONS, VolumeChecker, check_options
from realtime.stages.base import Stage
from realtime.stages.motion_keep import KeptMotionState
from realtime.stages.preprocess_motion import (
    MOTION_MODES,
    MotionCorrector,
    parse_reference,
    warm_up_registration,
)
from rt_base.checks import check_choice, check_number
from rt_base.errors import ConfigError, MessageError
from rt_wire.message import Message
from rt_wire.volume import SCALE_KEY, volume_values


def load_mask(path: str, name: str = "mask") -> tuple[np.ndarray, np.ndarray]:
    """Mask file -> ((X, Y, Z) bool array, its (4, 4) affine)."""
    import nibabel as nib

    try:
        img = nib.load(path)
    except FileNotFoundError:
        raise ConfigError(f"'{name}' must be an existing NIfTI file, got {path!r}") from None
    mask = np.asanyarray(img.dataobj) > 0
    if mask.ndim != 3 or not mask.any():
        raise ConfigError(
            f"'{name}' must be a non-empty 3D mask, got shape {mask.shape} in {path!r}"
        )
    return mask, np.asarray(img.affine, float)


class PreprocessStage(Stage):
    """Masks volumes, normalizes per voxel online, and checks that no volume went missing.

    Emits one ``tr`` message per volume with buffers ``raw`` (V,) (masked scanner values: the
    estimate stage standardizes them inside its GLM window; the recorder keeps them for the
    offline comparison) and ``z`` (V,) (running z-score, for displays).  A volume
    index that jumps is reported as a ``gap`` message with the lost indices; a repeated index is
    dropped and reported.

    With ``motion`` ``estimate`` or ``correct`` each ``tr`` message's meta carries ``motion``:
    ``{"params": [tx, ty, tz, rx, ry, rz], "fd": mm, "mode": ..., "iterations": n}`` (mm and
    degrees; :mod:`realtime.stages.preprocess_motion`).

    Bad volumes (:mod:`fmri_compute.volume_checks`: NaN/Inf voxels, dropout, dropped slice,
    intensity spike) are checked on the volume as acquired, before anything else.  A bad one
    keeps its TR slot and its ``tr`` message, whose meta carries ``bad_volume``:
    ``{"reasons": [...], "details": {...}}``; it is censored: never motion-registered (nor the
    motion reference: the next good volume is), its ``raw`` is the volume masked as acquired
    with NaN/Inf set to 0, its ``z`` is scored against the running statistics without entering
    them, and the estimate stage leaves it out of the GLM.  Each is logged (run, TR, reason)
    and counted in the status (``bad_volumes``, ``bad_volume_reasons``).

    Parameters
    ----------
    mask : the ROI mask (path of a NIfTI, or an array on the volumes' grid).
    motion : ``none``, ``estimate`` or ``correct``.
    motion_ref : ``first``, a volume number, or a NIfTI path.
    brain_mask : voxels that drive the motion fit (path or array; None: found from the reference).
    motion_device : torch device of the fit.
    fd_threshold : framewise displacement (mm) above which a volume is counted and warned about.
    volume_checks : ``True`` (the default thresholds), ``False`` (no checks) or a mapping of
        :class:`~fmri_compute.volume_checks.VolumeCheckOptions` fields; the checks use the
        brain mask when there is one, else the ROI mask.
    motion_state_dir : where the motion reference and each run's starting parameters are kept
        (:mod:`realtime.stages.motion_keep`): a restarted stage (incarnation > 0) takes them
        back and corrects as the process that died would have; None: nothing kept.
    """

    name = "preprocess"
    publish_kinds = frozenset({"tr", "gap"})

    def __init__(
        self,
        mask: str | np.ndarray,
        *,
        motion: str = "none",
        motion_ref: str | int = "first",
        brain_mask: str | np.ndarray | None = None,
        motion_device: str = "cpu",
        fd_threshold: float = 0.5,
        volume_checks: bool | dict = True,
        motion_state_dir: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.kept = None if motion_state_dir is None else KeptMotionState(motion_state_dir)
        if self.kept is not None and self.recovery.incarnation > 0:
            self.kept.load_starts()
        if isinstance(mask, str):
            self.mask, self.mask_affine = load_mask(mask)
        else:
            self.mask, self.mask_affine = np.asarray(mask, bool), None
        if isinstance(brain_mask, str):
            brain_mask = load_mask(brain_mask, "brain_mask")[0]
        self.brain_mask = None if brain_mask is None else np.asarray(brain_mask, bool)
        self.motion = check_choice(motion, "motion", MOTION_MODES)
        self.motion_ref = parse_reference(motion_ref)
        self.motion_device = motion_device
        self.fd_threshold = check_number(fd_threshold, "fd_threshold", minimum=0, unit="mm")
        self.corrector: MotionCorrector | None = None
        if self.motion != "none":
            warm_up_registration(self.mask.shape, self.mask_affine, motion_device)
        self.held: list[Message] = []  # volumes that wait for a volume-number reference
        self.n_runs = 0
        self.max_fd = 0.0
        self.fd_over = 0
        self.flat_index = np.flatnonzero(self.mask)
        self.n_voxels = int(self.flat_index.size)
        self.run: str | None = None
        self.zscore = None
        self.next_index = 0
        self.expected = 0
        self.run_received = 0
        self.volumes_lost = 0
        self.volumes_repeated = 0
        options = check_options(volume_checks)
        check_mask = self.mask if self.brain_mask is None else self.brain_mask
        self.checker = None if options is None else VolumeChecker(check_mask, options)
        self.bad_by_reason = dict.fromkeys(REASONS, 0)
        self.bad_volumes = 0
        self._reference_late = False  # the motion reference was bad: the next good one serves

    @classmethod
    def from_options(
        cls,
        links: dict,
        *,
        mask: str,
        motion: str = "none",
        motion_ref: str | int = "first",
        brain_mask: str | None = None,
        motion_device: str = "cpu",
        fd_threshold: float = 0.5,
        volume_checks: bool | dict = True,
        motion_state_dir: str | None = None,
    ) -> PreprocessStage:
        """Build from a spec: ``mask`` (and ``brain_mask``) are NIfTI paths (see the class)."""
        return cls(
            mask,
            motion=motion,
            motion_ref=motion_ref,
            brain_mask=brain_mask,
            motion_device=motion_device,
            fd_threshold=fd_threshold,
            volume_checks=volume_checks,
            motion_state_dir=motion_state_dir,
            **links,
        )

    def status(self) -> dict:
        return {
            **self.counters,
            "run": self.run,
            "volumes_lost": self.volumes_lost,
            "volumes_repeated": self.volumes_repeated,
            "motion": self.motion,
            "max_fd": round(self.max_fd, 4),
            "fd_over_threshold": self.fd_over,
            "volume_checks": self.checker is not None,
            "bad_volumes": self.bad_volumes,
            "bad_volume_reasons": dict(self.bad_by_reason),
        }

    # -- the motion state, kept for a restart (realtime.stages.motion_keep) ------------------
    def _set_reference(self, volume: np.ndarray) -> None:
        self.corrector.set_reference(volume)
        if self.kept is not None:
            self.kept.save_reference(volume)

    def _take_back_reference(self) -> None:
        """A restarted stage's corrector gets the reference its previous process kept."""
        if self.kept is None or self.recovery.incarnation == 0:
            return
        reference = self.kept.reference()
        if reference is None:
            return
        if reference.shape != self.mask.shape:
            self.report(
                "warning",
                f"the kept motion reference has shape {reference.shape}, not the mask's "
                f"{self.mask.shape}: not used, the next volume is the reference",
            )
            return
        self.corrector.set_reference(reference)
        self.report("warning", "restarted: volumes registered to the kept motion reference")

    def _keep_run_start(self, run: str) -> None:
        """The run's first fit starts where it did before a restart; else its start is kept."""
        if self.kept is None:
            return
        kept, params = self.kept.start_of(run)
        if kept:
            self.corrector.previous = params
        else:
            self.kept.save_start(run, self.corrector.previous)

    def handle(self, msg: Message):
        if msg.kind == "run_start":
            return self._run_start(msg)
        if msg.kind == "volume":
            return self._volume(msg)
        if msg.kind == "run_end":
            return self._run_end(msg)
        return [msg]

    def _run_start(self, msg: Message):
        shape = tuple(msg.meta.get("shape", ()))
        if shape != self.mask.shape:
            raise ConfigError(
                f"run {msg.run!r} has volumes of shape {shape} but the mask is {self.mask.shape}; "
                "give the mask of this dataset (--mask)"
            )
        affine = np.asarray(msg.meta.get("affine", np.eye(4)), float)
        if self.mask_affine is not None and not np.allclose(affine, self.mask_affine, atol=1e-3):
            raise ConfigError(
                f"run {msg.run!r} has volumes on another grid than the mask (affine "
                f"{affine.round(3).tolist()} vs {self.mask_affine.round(3).tolist()}); the mask "
                "must be in the volumes' space"
            )
        if self.motion != "none" and self.corrector is None:
            self.corrector = MotionCorrector(
                self.motion,
                self.motion_ref,
                affine,
                np.argwhere(self.mask),
                self.brain_mask,
                self.motion_device,
            )
            self._take_back_reference()
        if self.corrector is not None:
            self.corrector.start_run()
            self._keep_run_start(msg.run)
        self.n_runs += 1
        self.run = msg.run
        if self.checker is not None:
            self.checker.reset()
        self.zscore = RunningZScore(self.n_voxels)
        self.next_index = 0
        self.run_received = 0
        self.expected = int(msg.meta.get("n_volumes") or 0)
        return [msg]

    def _volume(self, msg: Message):
        if msg.run != self.run or self.zscore is None:
            raise MessageError(
                f"volume {msg.index} of run {msg.run!r} arrived outside its run (the current run "
                f"is {self.run!r}): a volume must follow its run's 'run_start'"
            )
        vol = msg.buffers.get("volume")
        if vol is None or vol.shape != self.mask.shape:
            got = None if vol is None else vol.shape
            raise MessageError(
                f"volume {msg.index} of run {msg.run!r} must have a 'volume' buffer of the mask's "
                f"shape {self.mask.shape}, got {got}"
            )
        # scanner units, once: the stored integers and their scale, or floats (rt_wire.volume)
        vol = msg.buffers["volume"] = volume_values(vol, msg.meta)
        msg.meta.pop(SCALE_KEY, None)
        bad = self._check(msg, vol)
        corrector = self.corrector
        if corrector is not None and not corrector.ready:
            wanted = self._reference_late or corrector.wants_reference(
                self.n_runs - 1, int(msg.index)
            )
            if wanted and bad and not self._reference_late:
                self._reference_late = True
                self.report(
                    "warning",
                    f"{msg.run} TR {msg.index} would be the motion reference but is a bad "
                    "volume: the next good volume is the reference instead",
                )
            if not wanted or bad:
                self.held.append(msg)  # processed once the reference volume has come
                return []
            self._reference_late = False
            self._set_reference(vol)
            held, self.held = self.held, []
            return [out for m in (*held, msg) for out in self._masked(m)]
        return self._masked(msg)

    def _check(self, msg: Message, vol: np.ndarray) -> bool:
        """Run the volume checks; a bad volume's verdict goes into its meta (``bad_volume``)."""
        msg.meta.pop("bad_volume", None)  # only this stage's verdict counts
        if self.checker is None:
            return False
        verdict = self.checker.check(vol)
        if not verdict.bad:
            return False
        msg.meta["bad_volume"] = {"reasons": list(verdict.reasons), "details": verdict.details}
        self.bad_volumes += 1
        for reason in verdict.reasons:
            self.bad_by_reason[reason] += 1
        text = (
            f"bad volume at {msg.run} TR {msg.index}: {verdict.describe()}; censored (kept out "
            "of the z-score and the GLM)"
        )
        self.report("warning", text)
        return True

    def _masked(self, msg: Message) -> list[Message]:
        """The ``tr`` message of a checked volume (and a ``gap`` before it if volumes were lost)."""
        vol = msg.buffers["volume"]
        outs: list[Message] = []
        index = int(msg.index)
        if index < self.next_index:
            self.volumes_repeated += 1
            self.log.warning("volume %s/%d repeated: dropped", msg.run, index)
            return [msg.derive("gap", meta={"stage": self.name, "repeated_volumes": [index]})]
        if index > self.next_index:
            lost = list(range(self.next_index, index))
            self.volumes_lost += len(lost)
            self.log.error("run %s: volume(s) %s never arrived", msg.run, lost)
            outs.append(msg.derive("gap", meta={"stage": self.name, "lost_volumes": lost}))
        self.next_index = index + 1
        self.run_received += 1
        meta = dict(msg.meta)
        if "bad_volume" in meta:  # censored: masked as acquired, scored but not counted
            raw = vol.reshape(-1)[self.flat_index].astype(np.float32)
            raw[~np.isfinite(raw)] = 0.0
            z = self.zscore.score(raw)
            return [*outs, msg.derive("tr", meta=meta, buffers={"raw": raw, "z": z})]
        if self.corrector is None:
            raw = vol.reshape(-1)[self.flat_index].astype(np.float32)
        else:
            raw, motion = self.corrector.process(vol)
            if isinstance(motion, str):
                text = f"{msg.run} TR {msg.index}: motion not measured, used as acquired ({motion})"
                self.report("warning", text)
            else:
                meta["motion"] = motion.meta(self.motion)
                self._count_fd(msg, motion.fd)
        z = self.zscore.update(raw).astype(np.float32)
        out = msg.derive("tr", meta=meta, buffers={"raw": raw, "z": z})
        outs.append(out)
        return outs

    def _count_fd(self, msg: Message, fd: float) -> None:
        self.max_fd = max(self.max_fd, fd)
        if fd > self.fd_threshold:
            self.fd_over += 1
            text = (
                f"head motion: FD {fd:.2f} mm at {msg.run} TR {msg.index} > "
                f"{self.fd_threshold:g} mm"
            )
            self.report("warning", text)

    def _run_end(self, msg: Message):
        outs: list[Message] = []
        good = [m for m in self.held if "bad_volume" not in m.meta]
        if good:  # the volume-number reference never came: the first good held one serves
            first = good[0]
            text = (
                f"run {msg.run!r} ended before volume {self.motion_ref} (the motion reference) "
                f"came: volume {first.index} is the reference instead"
            )
            self.report("warning", text)
            self._set_reference(first.buffers["volume"])
            self._reference_late = False
        if self.held:  # (all bad: they go on censored, the reference waits for a good one)
            held, self.held = self.held, []
            outs = [out for m in held for out in self._masked(m)]
        # an operator's stop ends the run early: volumes never sent are not lost
        last = (
            int(msg.meta.get("n_volumes_sent", self.expected))
            if msg.meta.get("stopped")
            else self.expected
        )
        missing = list(range(self.next_index, last))
        if missing:
            self.volumes_lost += len(missing)
            self.log.error("run %s ended without volume(s) %s", msg.run, missing)
            outs.append(msg.derive("gap", meta={"stage": self.name, "lost_volumes": missing}))
        outs.append(msg)
        return outs
