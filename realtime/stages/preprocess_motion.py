"""Head-motion correction inside the preprocess stage: each volume registered to one reference.

Modes (``--motion``):

``none``
    volumes are masked as they come.
``estimate``
    the six rigid parameters and framewise displacement are measured and reported; the volume
    is masked as it came (to see how much a session moves without changing its data).
``correct``
    as ``estimate``, and the ROI's values are sampled from the volume at the positions the head
    moved them to (trilinear), so every voxel keeps its anatomy over the session.

The reference (``--motion-ref``) is the session's first volume (``first``, the default), volume
``N`` of the session's first run (volumes before it wait for it: only the first run's lead-in
is delayed), or a NIfTI file on the volumes' grid.  One reference serves the whole session, so
the runs are aligned to each other too.  The fit (:class:`fmri_compute.motion.RigidRegistration`)
starts from the previous volume's parameters; framewise displacement
(:func:`fmri_compute.rigid.framewise_displacement`) is 0 for a run's first volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmri_compute.rigid import framewise_displacement
from rt_base.checks import check_choice, check_number
from rt_base.errors import ConfigError

MOTION_MODES = ("none", "estimate", "correct")
#: mask points per pyramid level of the real-time fit, without the final all-points step:
#: measured on subj01-moving (1 thread) 7.3 ms p50 per volume and 0.060 mm p95 error against
#: the true motion, against 16.2 ms and 0.063 mm with the library's defaults (40,000 + polish)
REALTIME_POINTS = 20_000
#: the real-time fit's convergence tolerance (mm and degrees per update; the library's default
#: is 0.001): measured on subj01-moving's 564 volumes warm-started (1 thread), 2.0-2.5 ms p50 per
#: volume and 1.1 Gauss-Newton steps instead of 3.8-4.3 ms and 2.5-2.8 steps, with the error
#: against the true motion unchanged (max 0.081 mm / 0.063 deg either way): near the answer one
#: step's remaining error is far below the fit's own error from noise and interpolation
REALTIME_TOLERANCE = 0.02


def warm_up_registration(shape: tuple[int, ...], affine: np.ndarray | None, device: str) -> None:
    """Import torch and run a throwaway registration on a synthetic head of the volumes' grid,
    when the stage is built: the first real volume (the reference) then costs ~0.1 s instead of
    the 1.5-2 s of importing torch and its kernels' first calls."""
    from fmri_compute.motion import RigidRegistration

    idx = np.indices(shape, dtype=np.float32)
    centre = (np.asarray(shape, np.float32) - 1)[:, None, None, None] / 2
    radius = np.sqrt(
        (((idx - centre) / (0.35 * np.asarray(shape)[:, None, None, None])) ** 2).sum(0)
    )
    head = np.clip(1.2 - radius, 0, 1) * (1000 + 100 * np.sin(idx[0] / 2))
    aff = np.eye(4) if affine is None else np.asarray(affine, float)
    RigidRegistration(
        head.astype(np.float32),
        aff,
        device=device,
        max_points=REALTIME_POINTS,
        tolerance=REALTIME_TOLERANCE,
    ).warm_up()


def parse_reference(value: str | int) -> str | int:
    """``first``, a volume number ``N`` (>= 0), or a NIfTI path (checked to exist)."""
    if isinstance(value, bool):
        raise ConfigError(
            f"'motion_ref' must be 'first', a volume number or a NIfTI, got {value!r}"
        )
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return int(check_number(int(value), "motion_ref", minimum=0, integer=True))
    if value == "first":
        return value
    from pathlib import Path

    if not isinstance(value, str) or not Path(value).expanduser().is_file():
        raise ConfigError(
            f"'motion_ref' must be 'first', a volume number N or an existing NIfTI file, got "
            f"{value!r}"
        )
    return str(Path(value).expanduser())


@dataclass
class MotionResult:
    """One volume's motion: the parameters (mm, degrees), FD (mm) and the fit's iterations."""

    params: np.ndarray
    fd: float
    iterations: int

    def meta(self, mode: str) -> dict:
        """The ``motion`` field of the ``tr`` message."""
        return {
            "params": [round(float(p), 5) for p in self.params],
            "fd": round(self.fd, 5),
            "mode": mode,
            "iterations": self.iterations,
        }


class MotionCorrector:
    """Registers each volume to the reference and samples the ROI (see the module docstring).

    Parameters
    ----------
    mode : one of :data:`MOTION_MODES` (not ``none``: then no corrector is made).
    reference : ``"first"``, a volume number, or a NIfTI path.
    affine : (4, 4) affine of the volumes' grid.
    roi_points : (V, 3) voxel indices of the ROI, in the order of the masked vector.
    brain_mask : (X, Y, Z) bool voxels that drive the fit (None: found from the reference).
    device : torch device of the fit.
    """

    def __init__(
        self,
        mode: str,
        reference: str | int,
        affine: np.ndarray,
        roi_points: np.ndarray,
        brain_mask: np.ndarray | None = None,
        device: str = "cpu",
    ) -> None:
        check_choice(mode, "motion", MOTION_MODES[1:])
        self.mode = mode
        self.reference = parse_reference(reference)
        self.affine = np.asarray(affine, float)
        self.roi_points = np.asarray(roi_points)
        self.brain_mask = brain_mask
        self.device = device
        self.registration = None
        self.previous: np.ndarray | None = None
        self._fd_previous: np.ndarray | None = None  # the run's previous volume's parameters
        if isinstance(self.reference, str) and self.reference != "first":
            self._build(_load_reference(self.reference))

    @property
    def ready(self) -> bool:
        """Whether the reference is known (a volume-number reference waits for its volume)."""
        return self.registration is not None

    def wants_reference(self, run_index: int, index: int) -> bool:
        """Whether volume ``index`` of the session's ``run_index``-th run is the reference."""
        if self.ready:
            return False
        if self.reference == "first":
            return True
        return run_index == 0 and index == self.reference

    def set_reference(self, volume: np.ndarray) -> None:
        """Use ``volume`` as the reference (the first volume, or volume N)."""
        self._build(np.asarray(volume, np.float32))

    def _build(self, reference: np.ndarray) -> None:
        from fmri_compute.motion import RigidRegistration

        if self.brain_mask is not None and self.brain_mask.shape != reference.shape:
            raise ConfigError(
                f"the brain mask {self.brain_mask.shape} is not on the reference's grid "
                f"{reference.shape}"
            )
        self.registration = RigidRegistration(
            reference,
            self.affine,
            mask=self.brain_mask,
            device=self.device,
            max_points=REALTIME_POINTS,
            polish=False,
            tolerance=REALTIME_TOLERANCE,
        )
        self.registration.warm_up()

    def start_run(self) -> None:
        """A new run: framewise displacement restarts (the fit still starts from the last
        parameters: the head rarely moves much between runs)."""
        self._fd_previous = None

    def process(self, volume: np.ndarray) -> tuple[np.ndarray, MotionResult | str]:
        """(V,) ROI values (corrected or as acquired, by mode) and the volume's motion, or why
        it could not be measured (a volume of NaNs, a head out of the field of view): then the
        ROI values are as acquired, so the volume is still used, never lost."""
        try:
            prepared = self.registration.prepare(volume)  # checked and converted once
            est = self.registration.estimate(prepared, init=self.previous)
        except ValueError as err:  # ConfigError is one
            return volume[tuple(self.roi_points.T)].astype(np.float32), str(err)
        params = np.asarray(est.params, float)
        self.previous = params
        fd = 0.0
        if self._fd_previous is not None:
            fd = float(framewise_displacement(np.stack([self._fd_previous, params]))[1])
        self._fd_previous = params
        if self.mode == "correct":
            raw = self.registration.reslice_points(prepared, params, self.roi_points)
        else:
            raw = volume[tuple(self.roi_points.T)].astype(np.float32)
        return raw, MotionResult(params, fd, int(est.iterations))


def _load_reference(path: str) -> np.ndarray:
    import nibabel as nib

    img = nib.load(path)
    data = np.asanyarray(img.dataobj, dtype=np.float32)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ConfigError(f"'motion_ref' {path!r} must be one 3D volume, got shape {data.shape}")
    return data
