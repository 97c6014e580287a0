"""Rigid motion correction in torch: estimate a volume's six parameters, reslice it.

Parameters follow :mod:`fmri_compute.rigid`: ``p = (tx, ty, tz mm, rx, ry, rz degrees)`` about
the field-of-view centre, ``M(p)`` maps a reference-position point to the moved volume, and the
corrected volume is ``moved(M x)``.  So ``rigid.reslice(moved, affine, estimate.params)``
recovers the reference, and so does :meth:`RigidRegistration.reslice` (in torch).

The fit is inverse-compositional Gauss-Newton (Baker & Matthews 2004) on intensities inside a
brain mask, coarse to fine: at each level of a block-average pyramid, each iteration samples
the moved volume at ``M x`` for every mask point ``x`` (trilinear,
:func:`torch.nn.functional.grid_sample`), solves the 7 x 7 normal equations of the residual
``gain * moved(M x) - reference(x)`` with the reference's precomputed Jacobian (six rigid
parameters and a global intensity gain), and composes ``M <- M W(delta)^-1``.  A level stops
when an update moves less than its tolerance (mm and degrees); a coarse level whose first update
is under half a voxel (as framewise displacement) is left at once, which makes a warm start
cost little more than the finest level's few steps.  Points that fall outside the
moved volume's grid leave the sums for that iteration.  Fine levels fit a fixed random subset of
the mask's points, then one last step over all of them.  One implementation runs on the CPU and
on CUDA; each iteration brings 9 numbers back to the host (the convergence test needs them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fmri_compute.motion_inputs import check_affine, check_levels, check_mask, check_volume
from fmri_compute.motion_pyramid import (
    Level,
    auto_mask,
    build_level,
    default_levels,
    downsample,
    pyramid,
)
from fmri_compute.motion_refine import refine_forward, refine_level
from fmri_compute.motion_reslice import (
    check_params,
    reslice_grid,
    sample_points,
    voxel_transform,
)
from fmri_compute.motion_steps import (
    FitState,
    MotionEstimate,
    displacement,
    small_update,
    to_grid,
    update_params,
)
from fmri_compute.rigid import grid_center, params_from_matrix, rigid_matrix
from rt_base.checks import check_number, check_torch_device
from rt_base.errors import ConfigError

__all__ = ["MotionEstimate", "RigidRegistration", "default_levels"]

#: the fewest mask points a pyramid level may have (7 unknowns need many more than 7)
MIN_LEVEL_POINTS = 64
#: the motion (mm, degrees) by which :meth:`RigidRegistration.warm_up` moves the reference
WARM_UP_MOTION = (0.8, -0.6, 0.5, 0.7, -0.5, 0.6)


@dataclass(frozen=True)
class PreparedVolume:
    """A volume checked and on a registration's device (:meth:`RigidRegistration.prepare`)."""

    tensor: torch.Tensor  # (1, 1, X, Y, Z) float32
    registration: RigidRegistration


class RigidRegistration:
    """Registers volumes to one reference volume (6-parameter rigid) and reslices them.

    Parameters
    ----------
    reference : (X, Y, Z) real array, the volume every other is aligned to.
    affine : (4, 4) voxel -> world (mm) affine shared by the reference and the volumes.
    mask : (X, Y, Z) bool, the voxels whose intensities drive the fit; default
        :func:`~fmri_compute.motion_pyramid.auto_mask` of the reference.
    device : torch device of the computation (``"cpu"``, ``"cuda"``, ...).
    max_iterations : Gauss-Newton iterations allowed at each pyramid level.
    tolerance : a level has converged when an update changes every translation by less than
        this many mm and every rotation by less than this many degrees (coarser levels of block
        size ``f`` use ``f * tolerance``).
    levels : pyramid block sizes, strictly decreasing positive integers (coarse to fine);
        default :func:`default_levels` (``(4, 2, 1)`` at NSD's 1.8 mm), without the coarse
        levels that would leave fewer than :data:`MIN_LEVEL_POINTS` mask points (a small volume).
    max_points : at most this many mask points per level (a fixed random subset), after which
        one last Gauss-Newton step over all the finest level's mask points removes the subset's
        sampling error (about twice as accurate for a third more time at NSD size); ``None``
        uses every point at every level.
    polish : take that last step over all points (when ``max_points`` left some out).
    refine_steps : after the fit, at most this many forward-compositional steps over every
        full-grid mask point (:mod:`fmri_compute.motion_refine`): the least-squares optimum
        instead of the inverse fit's fixed point, about twice as accurate for a few times the
        time; 0 (the default) leaves them out.
    refine_sigma : the Gaussian (voxels) the moved volume is smoothed by for those steps'
        gradient.

    Raises
    ------
    ConfigError
        For a reference, affine, mask or option that cannot work, saying which and why.
    """

    def __init__(
        self,
        reference: np.ndarray,
        affine: np.ndarray,
        *,
        mask: np.ndarray | None = None,
        device: str = "cpu",
        max_iterations: int = 10,
        tolerance: float = 1e-3,
        levels: Sequence[int] | None = None,
        max_points: int | None = 40_000,
        polish: bool = True,
        refine_steps: int = 0,
        refine_sigma: float = 1.0,
    ) -> None:
        ref = check_volume(reference, "reference")
        if float(ref.max()) == float(ref.min()):
            raise ConfigError("'reference' is constant: there is nothing to align volumes to")
        self.affine = check_affine(affine)
        self.shape: tuple[int, int, int] = ref.shape  # type: ignore[assignment]
        self.device = torch.device(check_torch_device(device))
        self.max_iterations = int(
            check_number(max_iterations, "max_iterations", minimum=1, integer=True)
        )
        self.tolerance = float(check_number(tolerance, "tolerance", minimum=0, strict_min=True))
        self.levels = default_levels(self.affine) if levels is None else check_levels(levels)
        if max_points is not None:
            max_points = int(
                check_number(max_points, "max_points", minimum=MIN_LEVEL_POINTS, integer=True)
            )
        self.mask = auto_mask(ref) if mask is None else check_mask(mask, self.shape)
        self.center = grid_center(self.shape, self.affine)
        ref_t = torch.as_tensor(ref, device=self.device)[None, None]
        self._levels: list[Level] = []
        for factor in self.levels:
            level = build_level(
                ref_t,
                self.mask,
                self.affine,
                self.center,
                factor,
                max_points=max_points,
                tolerance=self.tolerance * factor,
            )
            if level.n_points < MIN_LEVEL_POINTS and levels is None and factor != self.levels[-1]:
                continue  # a small volume: the default pyramid starts at a finer level
            if level.n_points < MIN_LEVEL_POINTS:
                raise ConfigError(
                    f"the mask leaves {level.n_points} points at pyramid level {factor} "
                    f"(at least {MIN_LEVEL_POINTS} needed): use a larger mask or finer 'levels'"
                )
            self._levels.append(level)
        self.levels = tuple(level.factor for level in self._levels)
        # the finest level's answer gets one last step over every mask point when it used a
        # subset (the subset's sampling error, not the fit, is then what limits accuracy)
        finest = self._levels[-1]
        self._polish: Level | None = None
        if polish and max_points is not None and finest.n_points == max_points:
            self._polish = build_level(
                ref_t,
                self.mask,
                self.affine,
                self.center,
                finest.factor,
                max_points=None,
                tolerance=finest.tolerance,
            )
            if self._polish.n_points == finest.n_points:
                self._polish = None
        self.refine_steps = int(check_number(refine_steps, "refine_steps", minimum=0, integer=True))
        self.refine_sigma = float(check_number(refine_sigma, "refine_sigma", minimum=0))
        self._refine = (
            refine_level(ref_t, self.mask, self.affine, self.center, (self._polish, finest))
            if self.refine_steps
            else None
        )
        self._reference = ref
        self._previous = np.zeros(6)
        self._axes = [torch.arange(n, dtype=torch.float32, device=self.device) for n in ref.shape]
        #: a coarse level whose first update moves the head less than this (mm, as framewise
        #: displacement) leaves the start to the finer levels: half a voxel of the full grid
        self._reach = 0.5 * float(np.linalg.norm(self.affine[:3, :3], axis=0).min())

    # ------------------------------------------------------------------ estimation

    def estimate(
        self, volume: np.ndarray | PreparedVolume, init: np.ndarray | None = None
    ) -> MotionEstimate:
        """The rigid parameters that align ``volume`` to the reference.

        Parameters
        ----------
        volume : (X, Y, Z) real array on the reference's grid, or it :meth:`prepare`-d.
        init : (6,) starting parameters (e.g. the previous volume's); default zeros.
        """
        moved = self._to_tensor(volume)
        start = np.zeros(6) if init is None else np.asarray(init, float)
        if start.shape != (6,) or not np.all(np.isfinite(start)):
            raise ConfigError(f"'init' must be 6 finite numbers, got {init!r}")
        matrix = rigid_matrix(start, self.center)
        fit = FitState(matrix)
        levels = self._levels
        moved_levels: dict[int, torch.Tensor] = {}
        first = None
        if init is not None and len(levels) > 1:
            # a warm start is usually within the finest level's reach already: try its first
            # step, and only when it moves the head more than that, go coarse to fine
            finest = levels[-1]
            moved_levels = {finest.factor: downsample(moved, finest.factor)}
            first = self._gauss_newton_step(
                finest, moved_levels[finest.factor], to_grid(finest) @ fit.matrix, fit.gain
            )
            if displacement(first[0]) < self._reach:
                levels = levels[-1:]
            else:
                fit.iterations, first = 1, None  # spent, and not used
        if len(levels) > 1:
            moved_levels = pyramid(moved, self.levels)
        for level in levels:
            self._fit_level(level, moved_levels[level.factor], fit, first)
            first = None
        if self._polish is not None:  # one step over every mask point, beyond the budget
            level = self._polish
            moved_l = moved_levels[level.factor]
            delta, fit.cost = self._gauss_newton_step(
                level, moved_l, to_grid(level) @ fit.matrix, fit.gain
            )
            fit.iterations += 1
            fit.matrix = fit.matrix @ np.linalg.inv(rigid_matrix(update_params(delta), self.center))
        if self._refine is not None:
            refine_forward(
                self._refine,
                moved,
                fit,
                self.center,
                steps=self.refine_steps,
                sigma=self.refine_sigma,
                tolerance=self.tolerance,
                min_points=MIN_LEVEL_POINTS,
            )
        return MotionEstimate(
            params=params_from_matrix(fit.matrix, self.center),
            iterations=fit.iterations,
            converged=fit.converged,
            cost=fit.cost,
        )

    def _fit_level(
        self,
        level: Level,
        moved: torch.Tensor,
        fit: FitState,
        first: tuple[np.ndarray, float] | None = None,
    ) -> None:
        """Gauss-Newton steps at one pyramid level, updating ``fit`` (``first``: the level's
        first step, already computed at ``fit``'s parameters)."""
        finest = level is self._levels[-1]
        fit.converged = False
        for step in range(self.max_iterations):
            if step == 0 and first is not None:
                delta, fit.cost = first
            else:
                delta, fit.cost = self._gauss_newton_step(
                    level, moved, to_grid(level) @ fit.matrix, fit.gain
                )
            fit.iterations += 1
            if step == 0 and not finest and displacement(delta) < self._reach:
                # the start is already within the finer levels' reach, and a coarse level's
                # optimum is no closer than that (warm starts stop here)
                return
            fit.matrix = fit.matrix @ np.linalg.inv(rigid_matrix(update_params(delta), self.center))
            fit.gain /= 1.0 + delta[6]
            if small_update(delta, level.tolerance):
                fit.converged = True
                return

    def _gauss_newton_step(
        self, level: Level, moved: torch.Tensor, world_to_grid: np.ndarray, gain: float
    ) -> tuple[np.ndarray, float]:
        """The update (7,) ``(t mm, omega rad, relative gain)`` and the mean squared residual."""
        transform = torch.as_tensor(
            (world_to_grid @ level.affine)[:3], dtype=torch.float32, device=self.device
        )
        coords = transform @ level.points  # (3, N) grid_sample coordinates, one row each
        sampled = F.grid_sample(  # a transposed grid: no copy, no slower
            moved, coords.T[None, None, None], mode="bilinear", align_corners=True
        ).view(-1)
        inside = coords.abs().amax(dim=0) <= 1.0
        residual = torch.where(inside, gain * sampled - level.values, 0.0)
        sums = (
            torch.cat(
                [
                    level.jacobian_t @ residual,
                    (residual @ residual)[None],
                    inside.sum()[None].to(residual.dtype),
                ]
            )
            .cpu()
            .numpy()
            .astype(np.float64)
        )
        n_inside = int(sums[8])
        if n_inside < MIN_LEVEL_POINTS:
            raise ValueError(
                f"the volume moved out of the field of view: only {n_inside} of the mask's "
                f"points fall inside it"
            )
        hessian = level.hessian
        if n_inside < level.n_points:  # some points left the grid: their rows leave the sums
            gone = level.jacobian_t[:, ~inside].double()  # (7, few)
            hessian = hessian - (gone @ gone.T).cpu().numpy()
        delta = np.linalg.solve(hessian, sums[:7])
        return delta, float(sums[7] / n_inside)

    # ------------------------------------------------------------------ reslicing

    def reslice(self, volume: np.ndarray | PreparedVolume, params: np.ndarray) -> np.ndarray:
        """(X, Y, Z) float32 ``volume(M(params) x)`` on the reference grid (trilinear; 0 outside
        the volume's grid), computed on this registration's device."""
        moved = self._to_tensor(volume)
        p = check_params(params)
        transform = voxel_transform(p, self.center, self.affine, self.shape, self.device)
        return reslice_grid(moved, transform, self._axes)

    def reslice_points(
        self, volume: np.ndarray | PreparedVolume, params: np.ndarray, points: np.ndarray
    ) -> np.ndarray:
        """(N,) float32 ``volume(M(params) x_i)`` at the (N, 3) reference-grid voxel indices
        ``points`` only (an ROI: far cheaper than :meth:`reslice`); trilinear, 0 outside."""
        moved = self._to_tensor(volume)
        p = check_params(params)
        pts = np.asarray(points)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise ConfigError(f"'points' must be (N, 3) voxel indices, got shape {pts.shape}")
        cached = getattr(self, "_points_cache", None)
        if cached is None or cached[0] is not points:  # the same ROI every volume: kept
            homogeneous = np.concatenate([pts.T, np.ones((1, len(pts)))]).astype(np.float32)
            cached = self._points_cache = (points, torch.as_tensor(homogeneous, device=self.device))
        transform = voxel_transform(p, self.center, self.affine, self.shape, self.device)
        return sample_points(moved, transform, cached[1])

    def correct(self, volume: np.ndarray) -> tuple[np.ndarray, MotionEstimate]:
        """Estimate ``volume``'s motion (starting from the previous call's parameters), reslice
        it onto the reference grid, and remember the parameters for the next call."""
        estimate = self.estimate(volume, init=self._previous)
        self._previous = estimate.params
        return self.reslice(volume, estimate.params), estimate

    def warm_up(self) -> None:
        """Take once each path a session takes, so that the first real volumes do not pay for
        torch's first-call set-up (on a GPU, each kernel is loaded at its first use): a cold
        estimate, a warm-started one and a reslice, of the reference moved by
        :data:`WARM_UP_MOTION` (the reference itself converges at once, which skips the later
        iterations' work).  The remembered parameters stay."""
        moved = self.reslice(self._reference, np.asarray(WARM_UP_MOTION, float))
        found = self.estimate(moved)
        self.estimate(moved, init=found.params)
        self.reslice(moved, found.params)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # ------------------------------------------------------------------ helpers

    def prepare(self, volume: np.ndarray) -> PreparedVolume:
        """``volume`` checked and put on this registration's device once, for an
        :meth:`estimate` and a reslice of the same volume (each would otherwise check and copy
        it again: about a millisecond at NSD size on a CPU)."""
        return PreparedVolume(self._to_tensor(volume), self)

    def _to_tensor(self, volume: np.ndarray | PreparedVolume) -> torch.Tensor:
        if isinstance(volume, PreparedVolume):
            if volume.registration is not self:
                raise ConfigError("a prepared volume is used by the registration that prepared it")
            return volume.tensor
        vol = np.asarray(volume)
        if vol.shape != self.shape:
            raise ConfigError(
                f"'volume' must have the reference's shape {self.shape}, got {vol.shape}: "
                "register volumes of one run to a reference of that run's grid"
            )
        vol = check_volume(vol, "volume")
        return torch.as_tensor(vol, device=self.device)[None, None]
