"""benchmarks/bench_motion.py at a tiny size: volumes, both methods, the table, main().

The script is loaded by file name (benchmarks/ is scripts, not a package), as
tests/test_benchmarks.py does.  No timing is asserted: only that each part runs and that its
figures are the ones it claims (known motions come back, the peer's parameters are in our
convention).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_motion.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_motion", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_motion"] = module  # the dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("bench_motion", None)


@pytest.fixture(scope="module")
def vols(bench):
    pytest.importorskip("nilearn")
    return bench.make_volumes("small", 2, seed=1)


def test_volumes_are_moved_by_their_known_motions(bench, vols):
    shape, _ = bench.grid("small")
    assert vols.reference.shape == shape and vols.truth.shape == (2, 6)
    assert np.abs(vols.truth).max() <= 3.0
    for moved in vols.moved:
        assert moved.shape == shape and moved.dtype == np.float32
        assert np.abs(moved - vols.reference).mean() > 0.05 * vols.reference.mean()  # it moved


def test_ours_recovers_the_motions_and_the_table_shows_it(bench, vols):
    result, reslice_ms = bench.run_ours(vols, threads=1)
    assert result.ms.shape == (2,) and (result.ms > 0).all() and reslice_ms > 0
    err = result.errors(vols.truth)
    assert err[:, :3].max() < 0.2 and err[:, 3:].max() < 0.2  # 3.6 mm voxels
    text = bench.table([result], vols.truth)
    assert result.method in text
    assert f"{err[:, :3].max():9.4f}" in text  # the printed max error is this run's


def test_a_drifting_run_warm_starts(bench):
    pytest.importorskip("nilearn")
    run = bench.make_volumes("small", 3, seed=2, drift=True)
    steps = np.abs(np.diff(run.truth, axis=0))
    assert steps.max() < 0.5 and np.abs(run.truth).max() <= 3.0
    cold, _ = bench.run_ours(run, threads=1)
    warm, _ = bench.run_ours(run, threads=1, warm=True)
    assert warm.method.endswith("warm")
    np.testing.assert_allclose(warm.params, cold.params, atol=0.05)
    assert warm.errors(run.truth).max() < 0.2


def test_simpleitk_peer_answers_in_our_convention(bench, vols):
    pytest.importorskip("SimpleITK")
    from fmri_compute.motion import RigidRegistration

    mask = RigidRegistration(vols.reference, vols.affine).mask
    peer = bench.run_simpleitk(vols, mask, threads=1)
    err = peer.errors(vols.truth)
    assert err[:, :3].max() < 0.5 and err[:, 3:].max() < 0.5  # a sign or axis slip is ~3
    ours, _ = bench.run_ours(vols, threads=1)
    text = bench.table([ours, peer], vols.truth, reference=peer.method)
    ratios = [line for line in text.splitlines() if line.rstrip().endswith("x")]
    assert len(ratios) == 1 and ratios[0].startswith(ours.method)  # peer / ours, beside ours


def test_main_prints_a_table_per_thread_count(bench, vols, monkeypatch, capsys):
    monkeypatch.setattr(
        bench, "make_volumes", lambda size, n, seed, drift=False, template=None: vols
    )
    text = bench.main(["--size", "small", "--volumes", "2", "--threads", "1", "--no-peer"])
    rows = ("ours cpu 1 thr ", "all-pts", "ours cpu 1 thr +fwd3", "ours cpu 1 thr warm", "reslice")
    for row in rows:
        assert row in text
    assert "ms p50" in capsys.readouterr().out


def test_a_template_file_gives_the_volumes_of_its_image(bench, tmp_path):
    """--template: the MNI template saved as NIfTI gives exactly the default volumes (so a
    machine without nilearn runs the same benchmark); a 4D file is refused by name."""
    pytest.importorskip("nilearn")
    import nibabel as nib

    source, affine = bench.mni_source()
    path = tmp_path / "mni.nii.gz"
    nib.save(nib.Nifti1Image(source, affine), path)
    default = bench.make_volumes("small", 1, seed=3)
    from_file = bench.make_volumes("small", 1, seed=3, template=str(path))
    np.testing.assert_array_equal(from_file.reference, default.reference)
    np.testing.assert_array_equal(from_file.moved[0], default.moved[0])
    four_d = tmp_path / "run.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), affine), four_d)
    with pytest.raises(SystemExit, match="run.nii.gz.*3D"):
        bench.template_source(str(four_d))
