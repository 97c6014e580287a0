"""Rigid motion estimation: fmri_compute.motion against SimpleITK's rigid registration.

    python benchmarks/bench_motion.py                              # NSD size, 20 volumes, 1 and 2 threads
    python benchmarks/bench_motion.py --size small --volumes 5 --threads 1
    python benchmarks/bench_motion.py --device cuda                # also on the GPU, when there is one
    python benchmarks/bench_motion.py --template t1.nii.gz         # another source image

The volumes: nilearn's MNI152 template (2 mm) acquired on NSD's functional grid (81 x 104 x 83
at 1.8 mm, or a half-resolution "small" grid) in scanner-like units, then re-acquired after
seeded random rigid motions up to 3 mm and 3 degrees per axis (the head moves inside a larger
field of view, cubic interpolation), plus 1 % Gaussian noise.  Both methods get the same
reference, mask and volumes, start from zero motion, and are timed on estimation only (the
reslice time of ours is printed apart).  ``--template``: acquire from this 3D NIfTI (in its own
units) instead of the MNI template (a lab's own anatomy; or the template saved where nilearn is
not installed).  With ``--device cuda`` every row of ours runs again on the GPU, with the
peer's ratio against the peer at the most threads.  The peer is SimpleITK's Euler3DTransform about the
grid centre, mean squares in the mask, regular step gradient descent, shrink 4/2/1 with smoothing.
Rows of ours: the defaults (40 000 points a level), ``all-pts`` (every mask point: slower, a
little more accurate), ``+fwd3`` (the fit finished by 3 forward-compositional steps over every
mask point, :mod:`fmri_compute.motion_refine`: the most accurate, a few times slower) and ``warm`` (a slowly drifting run, each volume started from the previous
answer, as a real-time session runs; ``warm 20k``: the preprocess stage's setting, 20 000 points
a level, no final all-points step, tolerance 0.02 mm / degree).  Prints figures only: ms per volume (median, p95), absolute errors (max, p95, median) in mm and
degrees, and the speed ratio peer / ours (of the median wall-clock times).  ``cpu p50`` is the
process's CPU time per volume, all threads together: on a machine busy with other work it is
the better guide to the wall-clock time the same run takes on idle cores.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from fmri_compute import rigid
from fmri_compute.motion import RigidRegistration
from realtime.stages.preprocess_motion import REALTIME_POINTS, REALTIME_TOLERANCE

#: grid shape and voxel size (mm) of each benchmark size
SIZES = {"nsd": ((81, 104, 83), 1.8), "small": ((41, 52, 42), 3.6)}
#: where the grid's centre sits in MNI space (mm): the brain's middle
GRID_CENTRE_MNI = np.array([0.0, -18.0, 8.0])


@dataclass
class Volumes:
    """A reference and moved volumes with their true motion parameters."""

    reference: np.ndarray  # (X, Y, Z) float32
    affine: np.ndarray  # (4, 4)
    moved: list[np.ndarray]  # each (X, Y, Z) float32
    truth: np.ndarray  # (N, 6)


@dataclass
class Result:
    """One method's run over the volumes."""

    method: str
    ms: np.ndarray  # (N,) per-volume estimation time (wall clock)
    cpu_ms: np.ndarray  # (N,) CPU time of the process meanwhile (all its threads)
    params: np.ndarray  # (N, 6) estimates

    def errors(self, truth: np.ndarray) -> np.ndarray:
        return np.abs(self.params - truth)


def grid(size: str) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of a benchmark grid centred on the MNI brain."""
    shape, mm = SIZES[size]
    aff = np.diag([mm, mm, mm, 1.0])
    aff[:3, 3] = GRID_CENTRE_MNI - (np.asarray(shape) - 1) / 2 * mm
    return shape, aff


def mni_source() -> tuple[np.ndarray, np.ndarray]:
    """nilearn's MNI152 T1 template (2 mm) in scanner-like units (about 1000 at the top)."""
    from nilearn import datasets  # seconds to import: only here

    img = datasets.load_mni152_template(resolution=2)
    return np.asarray(img.dataobj, np.float32) * 1000.0, img.affine


def template_source(path: str) -> tuple[np.ndarray, np.ndarray]:
    """A 3D NIfTI's data (its own units) and affine: the source instead of the MNI template."""
    import nibabel as nib

    img = nib.load(path)
    if len(img.shape) != 3:
        raise SystemExit(f"--template {path}: a 3D image is needed, this one is {img.shape}")
    return np.asarray(img.dataobj, np.float32), img.affine


def acquire(source, source_affine, shape, affine, params) -> np.ndarray:
    """The grid's record of ``source`` after the head moved by ``params`` (cubic):
    ``source(M^-1 y)``, ``M`` about the grid centre (the fmri_compute.rigid convention)."""
    motion = rigid.rigid_matrix(params, rigid.grid_center(shape, affine))
    vox = np.linalg.inv(source_affine) @ np.linalg.inv(motion) @ affine
    ijk = np.indices(shape, dtype=float).reshape(3, -1)
    src = vox[:3, :3] @ ijk + vox[:3, 3:]
    return ndimage.map_coordinates(source, src, order=3).reshape(shape).astype(np.float32)


def make_volumes(
    size: str,
    n: int,
    seed: int = 0,
    noise: float = 0.01,
    drift: bool = False,
    template: str | None = None,
) -> Volumes:
    """``n`` volumes moved by random motions up to 3 mm / 3 degrees per axis, with Gaussian
    noise of ``noise`` times the mean brain intensity.  ``drift``: a run instead, a random walk
    of 0.1 mm / 0.1 degree steps per axis from the middle of the range (what a warm start sees).
    ``template``: a NIfTI to acquire from instead of the MNI template."""
    source, source_affine = template_source(template) if template else mni_source()
    shape, aff = grid(size)
    reference = acquire(source, source_affine, shape, aff, np.zeros(6))
    sd = noise * float(reference[reference > 0.2 * reference.max()].mean())
    rng = np.random.default_rng(seed)
    if drift:
        start = rng.uniform(-1.5, 1.5, 6)
        truth = np.clip(start + np.cumsum(rng.normal(0, 0.1, (n, 6)), axis=0), -3, 3)
    else:
        truth = np.concatenate([rng.uniform(-3, 3, (n, 3)), rng.uniform(-3, 3, (n, 3))], axis=1)
    moved = [
        acquire(source, source_affine, shape, aff, p) + rng.normal(0, sd, shape).astype(np.float32)
        for p in truth
    ]
    reference = reference + rng.normal(0, sd, shape).astype(np.float32)
    return Volumes(reference, aff, moved, truth)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_ours(
    vols: Volumes,
    threads: int,
    device: str = "cpu",
    warm: bool = False,
    max_points: int | None = 40_000,
    polish: bool = True,
    tolerance: float = 1e-3,
    refine_steps: int = 0,
) -> tuple[Result, float]:
    """Our estimates and times (each volume from zero motion, or ``warm`` from the previous
    volume's answer as :meth:`~fmri_compute.motion.RigidRegistration.correct` does) and the
    median reslice ms.  ``max_points=None``: every mask point at every level."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        reg = RigidRegistration(
            vols.reference,
            vols.affine,
            device=device,
            max_points=max_points,
            polish=polish,
            tolerance=tolerance,
            refine_steps=refine_steps,
        )
        reg.warm_up()
        ms, cpu_ms, params, reslice_ms = [], [], [], []
        for volume in vols.moved:
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            est = reg.estimate(volume, init=params[-1] if warm and params else None)
            _sync(device)
            ms.append(1e3 * (time.perf_counter() - t0))
            cpu_ms.append(1e3 * (time.process_time() - c0))
            params.append(est.params)
            t0 = time.perf_counter()
            reg.reslice(volume, est.params)
            reslice_ms.append(1e3 * (time.perf_counter() - t0))
    finally:
        torch.set_num_threads(previous)
    name = f"ours {device} {threads} thr" + (" warm" if warm else "")
    name += " all-pts" if max_points is None else ""
    name += "" if polish else f" {max_points // 1000}k"
    name += f" +fwd{refine_steps}" if refine_steps else ""
    result = Result(name, np.array(ms), np.array(cpu_ms), np.array(params))
    return result, statistics.median(reslice_ms)


def _sitk_image(sitk, volume: np.ndarray, affine: np.ndarray):
    """A SimpleITK image of an (X, Y, Z) array whose physical space is the affine's."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(volume.transpose(2, 1, 0)))
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    img.SetSpacing(spacing.tolist())
    img.SetDirection((affine[:3, :3] / spacing).ravel().tolist())
    img.SetOrigin(affine[:3, 3].tolist())
    return img


def run_simpleitk(vols: Volumes, mask: np.ndarray, threads: int) -> Result:
    """SimpleITK's rigid registration of each moved volume to the reference."""
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    fixed = _sitk_image(sitk, vols.reference, vols.affine)
    fixed_mask = _sitk_image(sitk, mask.astype(np.uint8), vols.affine)
    center = rigid.grid_center(vols.reference.shape, vols.affine)
    ms, cpu_ms, params = [], [], []
    for volume in vols.moved:
        moving = _sitk_image(sitk, volume, vols.affine)
        t0, c0 = time.perf_counter(), time.process_time()
        start = sitk.Euler3DTransform()
        start.SetCenter(center.tolist())
        start.SetComputeZYX(True)  # R = Rz Ry Rx, as fmri_compute.rigid
        reg = sitk.ImageRegistrationMethod()
        reg.SetMetricAsMeanSquares()
        reg.SetMetricFixedMask(fixed_mask)
        reg.SetInterpolator(sitk.sitkLinear)
        reg.SetOptimizerAsRegularStepGradientDescent(
            learningRate=1.0, minStep=1e-4, numberOfIterations=200, relaxationFactor=0.5
        )
        reg.SetOptimizerScalesFromPhysicalShift()
        reg.SetShrinkFactorsPerLevel([4, 2, 1])
        reg.SetSmoothingSigmasPerLevel([2, 1, 0])
        reg.SetInitialTransform(start, inPlace=False)
        found = reg.Execute(fixed, sitk.Cast(moving, sitk.sitkFloat32))
        ms.append(1e3 * (time.perf_counter() - t0))
        cpu_ms.append(1e3 * (time.process_time() - c0))
        params.append(_sitk_params(found, center))
    return Result(f"SimpleITK {threads} thr", np.array(ms), np.array(cpu_ms), np.array(params))


def _sitk_params(transform, center: np.ndarray) -> np.ndarray:
    """The fmri_compute.rigid parameters of a SimpleITK rigid transform (fixed -> moving
    points, which is our ``M``)."""
    import SimpleITK as sitk

    euler = sitk.Euler3DTransform(sitk.CompositeTransform(transform).GetNthTransform(0))
    m = np.eye(4)
    m[:3, :3] = np.reshape(euler.GetMatrix(), (3, 3))
    c = np.asarray(euler.GetCenter())
    m[:3, 3] = np.asarray(euler.GetTranslation()) + c - m[:3, :3] @ c
    return rigid.params_from_matrix(m, center)


def table(results: list[Result], truth: np.ndarray, reference: str | None = None) -> str:
    """The printed table: times, errors and, beside each of ours, peer / ours."""
    head = (
        f"{'method':<22s}{'ms p50':>9s}{'ms p95':>9s}{'cpu p50':>9s}{'mm max':>9s}{'mm p95':>9s}"
        f"{'mm p50':>9s}{'deg max':>9s}{'deg p95':>9s}{'deg p50':>9s}{'peer/ours':>11s}"
    )
    peer = next((r for r in results if r.method == reference), None)
    lines = [head, "-" * len(head)]
    for r in results:
        err = r.errors(truth)
        med = statistics.median(r.ms)
        ratio = ""
        if peer is not None and r.method.startswith("ours"):  # of each of ours
            ratio = f"{statistics.median(peer.ms) / med:10.1f}x"
        lines.append(
            f"{r.method:<22s}{med:9.1f}{np.percentile(r.ms, 95):9.1f}"
            f"{statistics.median(r.cpu_ms):9.1f}"
            f"{err[:, :3].max():9.4f}{np.percentile(err[:, :3], 95):9.4f}{np.median(err[:, :3]):9.4f}"
            f"{err[:, 3:].max():9.4f}{np.percentile(err[:, 3:], 95):9.4f}{np.median(err[:, 3:]):9.4f}"
            f"{ratio:>11s}"
        )
    return "\n".join(lines)


def rows_of_ours(vols: Volumes, run: Volumes, threads: int, device: str = "cpu"):
    """Every row of ours: from zero motion (defaults, every point, +3 forward steps) on
    ``vols`` and warm-started (defaults, the preprocess stage's setting) on the drifting ``run``;
    and the median reslice ms of the defaults."""
    ours, reslice_ms = run_ours(vols, threads, device)
    cold = [
        ours,
        run_ours(vols, threads, device, max_points=None)[0],
        run_ours(vols, threads, device, refine_steps=3)[0],
    ]
    warm = [
        run_ours(run, threads, device, warm=True)[0],
        run_ours(  # the preprocess stage's setting
            run,
            threads,
            device,
            warm=True,
            max_points=REALTIME_POINTS,
            polish=False,
            tolerance=REALTIME_TOLERANCE,
        )[0],
    ]
    return cold, warm, reslice_ms


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="nsd")
    ap.add_argument("--volumes", type=int, default=20)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--device", default="cpu", help="cpu, or cuda to add a GPU run")
    ap.add_argument("--no-peer", action="store_true", help="skip SimpleITK")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--template", help="a 3D NIfTI to acquire from (default: nilearn's MNI152)")
    args = ap.parse_args(argv)
    vols = make_volumes(args.size, args.volumes, seed=args.seed, template=args.template)
    run = make_volumes(args.size, args.volumes, seed=args.seed, drift=True, template=args.template)
    shape = vols.reference.shape
    print(
        f"{args.volumes} volumes {shape} at {SIZES[args.size][1]} mm, random motions up to "
        f"3 mm / 3 deg from zero; 'warm': a drifting run of {args.volumes}, each volume started "
        "from the previous answer" + (f"; source {args.template}" if args.template else ""),
        flush=True,
    )
    mask = RigidRegistration(vols.reference, vols.affine).mask
    out, peer = [], None
    for threads in args.threads:
        results, warm, reslice_ms = rows_of_ours(vols, run, threads)
        peer_name = None
        if not args.no_peer:
            try:
                peer = run_simpleitk(vols, mask, threads)
                results.append(peer)
                peer_name = peer.method
            except ImportError:
                print("SimpleITK is not installed (pip install mindeye-rt[bench]): no peer")
        out.append(table(results, vols.truth, peer_name))
        out.append(table(warm, run.truth).split("\n", 2)[2])
        out.append(f"ours {threads} thr: reslice onto the reference grid p50 {reslice_ms:.1f} ms\n")
        print("\n".join(out[-3:]), flush=True)
    if args.device != "cpu":
        results, warm, reslice_ms = rows_of_ours(vols, run, 1, device=args.device)
        if peer is not None:  # the peer at the most threads, on the same volumes
            results.append(peer)
        out.append(table(results, vols.truth, peer.method if peer else None))
        out.append(table(warm, run.truth).split("\n", 2)[2])
        out.append(f"ours {args.device}: reslice p50 {reslice_ms:.2f} ms\n")
        print("\n".join(out[-3:]), flush=True)
    return "\n".join(out)


if __name__ == "__main__":
    main()
