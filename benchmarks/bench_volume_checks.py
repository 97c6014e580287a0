"""Cost of the per-volume quality checks (:mod:`fmri_compute.volume_checks`) on one CPU core.

    python benchmarks/bench_volume_checks.py                   # subj01 grid, its brain mask
    python benchmarks/bench_volume_checks.py --dataset tiny    # any dataset name or path

Checks every volume of the dataset's first run (good volumes, the common case) against the
dataset's brain mask (else its ROI mask) and prints the median, p95 and max per volume, then
the same for a volume with a NaN voxel (the only path that counts voxels one by one).
Timings are figures, not assertions.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def bench(dataset: str, repeats: int) -> None:
    from fmri_compute.volume_checks import VolumeChecker
    from replay_data.resolve import resolve_replay

    ds = resolve_replay(dataset, progress=False, log=lambda *a: None)
    mask = ds.brain_mask()
    which = "brain"
    if mask is None:
        mask, which = ds.roi_mask(), "ROI"
    run = ds.load_run(ds.runs[0])
    volumes = [np.ascontiguousarray(run[..., t]) for t in range(run.shape[-1])]
    checker = VolumeChecker(mask)
    times = []
    bad = 0
    for _ in range(repeats):
        checker.reset()
        for vol in volumes:
            t0 = time.perf_counter()
            bad += checker.check(vol).bad
            times.append(time.perf_counter() - t0)
    nan_vol = volumes[-1].copy()
    nan_vol.reshape(-1)[nan_vol.size // 2] = np.nan
    nan_times = []
    for _ in range(50):
        t0 = time.perf_counter()
        checker.check(nan_vol)
        nan_times.append(time.perf_counter() - t0)
    ms = 1e3 * np.asarray(times)
    print(
        f"{ds.meta.name}: grid {ds.meta.shape}, {which} mask {int(mask.sum())} voxels "
        f"({checker.n_voxels} checked), {len(times)} checks, {bad} flagged"
    )
    print(
        f"good volume: p50 {np.percentile(ms, 50):.3f} ms, p95 {np.percentile(ms, 95):.3f} ms, "
        f"max {ms.max():.3f} ms"
    )
    print(f"volume with a NaN voxel: p50 {1e3 * np.median(nan_times):.3f} ms")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="subj01", help="dataset name or path (default subj01)")
    p.add_argument("--repeats", type=int, default=3, help="passes over the run (default 3)")
    args = p.parse_args()
    bench(args.dataset, args.repeats)


if __name__ == "__main__":
    main()
