"""Rigid motion estimation and correction (fmri_compute.motion) against known motions.

Three kinds of volume, each moved by known rigid transforms in the fmri_compute.rigid
convention: a seeded synthetic brain (moved with ``rigid.move_volume``), nibabel's real EPI test
run, and nilearn's MNI152 brain on NSD's 81 x 104 x 83 grid at 1.8 mm.  For the last two the
moved volume is acquired from a larger field of view than the reference's (the head moves, the
grid stays), as in a scanner: ``move_volume`` of the cropped reference would instead fill the
moved volume's edges with zeros that no real acquisition has.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from scipy import ndimage

from fmri_compute import rigid
from fmri_compute.motion import WARM_UP_MOTION, MotionEstimate, RigidRegistration
from rt_base.errors import ConfigError

MM_TOL, DEG_TOL = 0.1, 0.1
#: rigid motions up to 3 mm and 3 degrees, the corners of the target range among them
MOTIONS = [
    (3.0, -3.0, 3.0, 3.0, -3.0, 3.0),
    (-3.0, 3.0, -3.0, -3.0, 3.0, -3.0),
    (0.4, 2.2, -1.3, 1.7, 0.3, -2.5),
    (-1.8, -0.6, 2.9, -0.2, -2.8, 1.1),
]


def synthetic_brain(shape=(44, 52, 40), seed=0) -> np.ndarray:
    """Brain-like volume: a soft-edged ellipsoid with smooth tissue texture and a dark
    'ventricle', in scanner-like units (about 600 inside, 0 outside)."""
    rng = np.random.default_rng(seed)
    idx = np.indices(shape, dtype=float)
    c = (np.asarray(shape, float) - 1)[:, None, None, None] / 2
    radii = (np.asarray(shape, float) * 0.36)[:, None, None, None]
    r = np.sqrt((((idx - c) / radii) ** 2).sum(0))
    head = ndimage.gaussian_filter((r < 1).astype(float), 1.0)
    texture = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0)
    texture /= texture.std()
    ventricle = np.exp(-((((idx - c) / (radii * 0.3)) ** 2).sum(0)))
    return (head * (600 + 120 * texture) * (1 - 0.6 * ventricle)).astype(np.float32)


def grid_affine(shape, size=2.5) -> np.ndarray:
    aff = np.diag([size, size, size, 1.0])
    aff[:3, 3] = -(np.asarray(shape) - 1) / 2 * size + [3.0, -10.0, 15.0]  # off the origin
    return aff


def acquire(source, source_affine, shape, affine, params) -> np.ndarray:
    """What a grid of ``shape``/``affine`` records of ``source`` after the head moved by
    ``params`` (cubic): ``source(M^-1 y)`` with ``M`` about the grid's centre."""
    motion = rigid.rigid_matrix(params, rigid.grid_center(shape, affine))
    vox = np.linalg.inv(source_affine) @ np.linalg.inv(motion) @ affine
    ijk = np.indices(shape, dtype=float).reshape(3, -1)
    src = vox[:3, :3] @ ijk + vox[:3, 3:]
    return ndimage.map_coordinates(source, src, order=3).reshape(shape).astype(np.float32)


def assert_recovered(estimate: MotionEstimate, truth, mm=MM_TOL, deg=DEG_TOL):
    err = np.abs(estimate.params - np.asarray(truth))
    assert err[:3].max() < mm and err[3:].max() < deg, (estimate, truth, err)


@pytest.fixture(scope="module")
def brain():
    ref = synthetic_brain()
    return ref, grid_affine(ref.shape)


@pytest.fixture(scope="module")
def registration(brain):
    ref, aff = brain
    return RigidRegistration(ref, aff)


def test_synthetic_brain_motions_are_recovered(brain, registration):
    ref, aff = brain
    rng = np.random.default_rng(1)
    for truth in MOTIONS:
        moved = rigid.move_volume(ref, aff, truth)
        moved += rng.normal(0, 6.0, ref.shape).astype(np.float32)  # 1 % of the brain's signal
        est = registration.estimate(moved)
        assert est.converged and est.iterations <= 3 * registration.max_iterations
        assert_recovered(est, truth)


def test_reference_itself_gives_no_motion(brain, registration):
    est = registration.estimate(brain[0])
    assert np.abs(est.params).max() < 1e-3
    assert est.converged and est.cost < 1e-6
    assert est.iterations == len(registration.levels)  # one step per level sees nothing to do


def test_a_global_intensity_change_does_not_bias_the_motion(brain, registration):
    ref, aff = brain
    truth = MOTIONS[2]
    assert_recovered(registration.estimate(1.08 * rigid.move_volume(ref, aff, truth)), truth)


def test_warm_start_from_the_answer_needs_fewer_iterations(brain, registration):
    ref, aff = brain
    truth = np.asarray(MOTIONS[3])
    moved = rigid.move_volume(ref, aff, truth)
    cold = registration.estimate(moved)
    warm = registration.estimate(moved, init=truth + 0.05)
    assert warm.iterations < cold.iterations
    np.testing.assert_allclose(warm.params, cold.params, atol=0.01)


def test_a_close_warm_start_fits_at_the_finest_level_only(brain, registration, monkeypatch):
    """A warm start within half a voxel of the answer skips the coarse levels and their
    pyramid; one far from it (a jump) goes coarse to fine and still lands on the answer."""
    import fmri_compute.motion as motion

    ref, aff = brain
    truth = np.asarray(MOTIONS[2])
    moved = rigid.move_volume(ref, aff, truth)
    seen: list[tuple[int, ...]] = []
    real_step = registration._gauss_newton_step

    def step(level, *args):
        seen.append(level.shape)
        return real_step(level, *args)

    monkeypatch.setattr(registration, "_gauss_newton_step", step)
    pyramids: list[int] = []
    real_pyramid = motion.pyramid
    monkeypatch.setattr(motion, "pyramid", lambda *a: pyramids.append(1) or real_pyramid(*a))
    near = registration.estimate(moved, init=truth + [0.1, -0.1, 0.05, 0.05, 0, -0.05])
    finest = registration._levels[-1].shape
    assert set(seen) == {finest} and not pyramids
    assert_recovered(near, truth)
    seen.clear()
    far = registration.estimate(moved, init=np.zeros(6))  # the answer is 3 mm / 3 deg away
    assert len(set(seen)) == len(registration.levels) and pyramids
    assert_recovered(far, truth)


def test_correct_warm_starts_and_reslices_like_rigid_reslice(brain):
    ref, aff = brain
    reg = RigidRegistration(ref, aff)
    cold_iterations = []
    drift = np.array([0.2, -0.1, 0.15, 0.1, 0.2, -0.1])
    for step in range(1, 4):  # a slow drift: each volume starts near the last one's answer
        truth = step * drift + np.asarray(MOTIONS[2])
        moved = rigid.move_volume(ref, aff, truth)
        corrected, est = reg.correct(moved)
        cold_iterations.append(reg.estimate(moved).iterations)
        assert_recovered(est, truth)
        assert corrected.dtype == np.float32 and corrected.shape == ref.shape
        expected = rigid.reslice(moved, aff, est.params, order=1)
        np.testing.assert_allclose(corrected, expected, atol=1e-3 * np.abs(ref).max())
        inner = reg.mask & ndimage.binary_erosion(np.ones(ref.shape, bool), iterations=4)
        residual = np.abs(corrected - ref)[inner]
        assert np.median(residual) < 0.02 * ref[inner].mean()  # back on the reference
        if step > 1:
            assert est.iterations < cold_iterations[-1]


def test_reslice_matches_rigid_reslice(brain, registration):
    ref, aff = brain
    p = np.array([1.2, -0.7, 2.0, -1.5, 2.5, 0.8])
    np.testing.assert_allclose(
        registration.reslice(ref, p),
        rigid.reslice(ref, aff, p, order=1),
        atol=1e-5 * ref.max(),  # float32 coordinates
    )


def test_the_iteration_budget_is_kept(brain):
    ref, aff = brain
    reg = RigidRegistration(ref, aff, max_iterations=1, levels=(2, 1))
    est = reg.estimate(rigid.move_volume(ref, aff, MOTIONS[0]))
    assert est.iterations == 2 and not est.converged


def test_a_point_subset_ends_with_one_step_over_all_points(brain, registration):
    ref, aff = brain
    subset = RigidRegistration(ref, aff, max_points=2000)
    moved = rigid.move_volume(ref, aff, MOTIONS[1])
    est, full = subset.estimate(moved), registration.estimate(moved)
    assert_recovered(est, MOTIONS[1])
    np.testing.assert_allclose(est.params, full.params, atol=0.01)  # the subset's error is gone
    # the same budget as without the last step, plus that step
    capped = RigidRegistration(ref, aff, max_points=2000, max_iterations=1, levels=(2, 1))
    assert capped.estimate(moved).iterations == 3


def test_warm_up_takes_the_cold_and_the_warm_path_on_a_moved_volume(brain, monkeypatch):
    ref, aff = brain
    reg = RigidRegistration(ref, aff)
    calls = []
    original = reg.estimate
    monkeypatch.setattr(
        reg, "estimate", lambda v, init=None: calls.append((v, init)) or original(v, init)
    )
    reg.warm_up()
    (cold, no_init), (warm, init) = calls
    assert no_init is None and init is not None and warm is cold
    assert np.abs(np.asarray(cold) - ref).mean() > 0.01 * np.abs(ref).mean()  # it moved
    # reslicing by a motion moves the reference by about its inverse: a motion to recover
    np.testing.assert_allclose(-init[:3], WARM_UP_MOTION[:3], atol=0.2)


def test_warm_up_leaves_the_state_alone(brain):
    ref, aff = brain
    reg = RigidRegistration(ref, aff)
    reg.warm_up()
    moved = rigid.move_volume(ref, aff, MOTIONS[2])
    assert_recovered(reg.correct(moved)[1], MOTIONS[2])  # from zero, not from a warm-up answer


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(reference=np.zeros((8, 8))), "3-D"),
        (dict(reference=np.full((8, 8, 8), np.nan)), "NaN"),
        (dict(reference=np.ones((8, 8, 8))), "constant"),
        (dict(reference=np.zeros((8, 8, 8), complex)), "real numbers"),
        (dict(affine=np.eye(3)), "affine"),
        (dict(affine=np.zeros((4, 4))), "singular"),
        (dict(mask=np.ones((4, 4, 4), bool)), "mask.*shape"),
        (dict(mask=np.ones((44, 52, 40))), "bool"),
        (dict(mask=np.zeros((44, 52, 40), bool)), "larger mask"),
        (dict(levels=(1, 2)), "decreasing"),
        (dict(levels=()), "decreasing"),
        (dict(levels=4), "levels"),
        (dict(max_iterations=0), "max_iterations"),
        (dict(tolerance=-1.0), "tolerance"),
        (dict(max_points=5), "max_points"),
        (dict(device="tpu"), "device"),
        pytest.param(
            dict(device="cuda"),
            "no CUDA",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here"),
        ),
    ],
)
def test_bad_options_are_config_errors(brain, kwargs, match):
    ref, aff = brain
    args = dict(reference=ref, affine=aff) | kwargs
    reference, affine = args.pop("reference"), args.pop("affine")
    with pytest.raises(ConfigError, match=match):
        RigidRegistration(reference, affine, **args)


def test_bad_volumes_are_value_errors_that_say_what_is_wrong(brain, registration):
    ref, aff = brain
    with pytest.raises(ValueError, match=r"reference's shape \(44, 52, 40\)"):
        registration.estimate(ref[:-1])
    with pytest.raises(ValueError, match="NaN"):
        registration.estimate(np.where(ref > 500, np.nan, ref))
    with pytest.raises(ValueError, match="init"):
        registration.estimate(ref, init=np.zeros(3))
    with pytest.raises(ValueError, match="params"):
        registration.reslice(ref, [0.0, 1.0])
    # a volume whose head left the grid (or a wildly wrong start) says so
    with pytest.raises(ValueError, match="out of the field of view"):
        registration.estimate(ref, init=np.array([500.0, 0, 0, 0, 0, 0]))


def test_real_epi_from_nibabel():
    nib = pytest.importorskip("nibabel")
    path = os.path.join(os.path.dirname(nib.__file__), "tests", "data", "example4d.nii.gz")
    img = nib.load(path)  # a real EPI run: 128 x 96 x 24 at 2 x 2 x 2.2 mm, oblique
    full = np.asarray(img.dataobj[..., 0], np.float32)
    # the reference is the inner 18 slices; a motion brings in real tissue from beyond them
    crop = 3
    ref = full[:, :, crop:-crop]
    aff = img.affine @ np.r_[np.c_[np.eye(3), [0, 0, crop]], [[0, 0, 0, 1]]]
    reg = RigidRegistration(ref, aff)
    rng = np.random.default_rng(2)
    noise = np.diff(np.asarray(img.dataobj, np.float32), axis=-1).std() / np.sqrt(2)
    for truth in MOTIONS:
        moved = acquire(full, img.affine, ref.shape, aff, truth)
        moved += rng.normal(0, noise, ref.shape).astype(np.float32)  # the run's own noise
        assert_recovered(reg.estimate(moved), truth)
    # the run's second volume moved very little from its first
    second = np.asarray(img.dataobj[..., 1], np.float32)[:, :, crop:-crop]
    est = reg.estimate(second)
    assert np.abs(est.params[:3]).max() < 0.2 and np.abs(est.params[3:]).max() < 0.2


@pytest.fixture(scope="module")
def mni_source():
    datasets = pytest.importorskip("nilearn.datasets")
    img = datasets.load_mni152_template(resolution=2)
    return np.asarray(img.dataobj, np.float32) * 1000, img.affine


def test_mni152_brain_at_nsd_size(mni_source):
    source, source_affine = mni_source
    shape, size = (81, 104, 83), 1.8
    aff = np.diag([size, size, size, 1.0])
    aff[:3, 3] = -(np.asarray(shape) - 1) / 2 * size + [0.0, -18.0, 8.0]  # centred on the brain
    ref = acquire(source, source_affine, shape, aff, np.zeros(6))
    reg = RigidRegistration(ref, aff)
    rng = np.random.default_rng(3)
    for truth in MOTIONS[:3]:
        moved = acquire(source, source_affine, shape, aff, truth)
        moved += rng.normal(0, 10.0, shape).astype(np.float32)
        assert_recovered(reg.estimate(moved), truth)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_cpu_answer(brain, registration):
    ref, aff = brain
    gpu = RigidRegistration(ref, aff, device="cuda")
    gpu.warm_up()
    moved = rigid.move_volume(ref, aff, MOTIONS[1])
    on_gpu, on_cpu = gpu.estimate(moved), registration.estimate(moved)
    np.testing.assert_allclose(on_gpu.params, on_cpu.params, atol=5e-3)
    assert_recovered(on_gpu, MOTIONS[1])
    corrected, _ = gpu.correct(moved)
    np.testing.assert_allclose(corrected, registration.reslice(moved, on_gpu.params), atol=0.05)


def test_a_small_volume_drops_the_default_coarse_levels_it_cannot_fill():
    from fmri_compute.rigid import move_volume

    shape = (20, 24, 20)
    aff = np.diag([1.8, 1.8, 1.8, 1.0])
    idx = np.indices(shape).astype(float)
    c = (np.array(shape) - 1)[:, None, None, None] / 2
    r = np.sqrt((((idx - c) / np.array([6, 7, 6])[:, None, None, None]) ** 2).sum(0))
    ref = (1000 * np.clip(1.2 - r, 0, 1) + 100 * np.sin(idx[0]) * (r < 1)).astype(np.float32)
    mask = r < 0.8
    reg = RigidRegistration(ref, aff, mask=mask)
    assert reg.levels[-1] == 1 and 4 not in reg.levels
    p = np.array([0.5, -0.3, 0.2, 1.0, -0.5, 0.5])
    est = reg.estimate(move_volume(ref, aff, p))
    np.testing.assert_allclose(est.params, p, atol=0.1)
    with pytest.raises(ConfigError, match="pyramid level 4"):
        RigidRegistration(ref, aff, mask=mask, levels=(4, 2, 1))


def test_reslice_points_is_reslice_at_those_points_and_polish_can_be_left_out():
    rng = np.random.default_rng(5)
    shape = (24, 28, 22)
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    ref = ndimage.gaussian_filter(rng.normal(size=shape), 1.5).astype(np.float32) + 5
    reg = RigidRegistration(ref, aff, mask=np.ones(shape, bool), max_points=500, polish=False)
    assert reg._polish is None
    assert RigidRegistration(ref, aff, mask=np.ones(shape, bool), max_points=500)._polish
    p = np.array([0.7, -0.4, 0.3, 1.2, 0.4, -0.8])
    pts = np.argwhere(rng.random(shape) < 0.1)
    np.testing.assert_allclose(
        reg.reslice_points(ref, p, pts), reg.reslice(ref, p)[tuple(pts.T)], atol=1e-4
    )
    inner = np.all((pts >= 4) & (pts < np.array(shape) - 4), axis=1)  # edges: padding rules
    np.testing.assert_allclose(
        reg.reslice_points(ref, p, pts)[inner],
        rigid.reslice_points(ref, aff, p, pts[inner]),
        atol=1e-3,
    )
    with pytest.raises(ConfigError, match="'points'"):
        reg.reslice_points(ref, p, pts[:, :2])


def test_a_prepared_volume_gives_the_same_answers_and_is_checked_once(brain, registration):
    ref, aff = brain
    moved = rigid.move_volume(ref, aff, MOTIONS[1]).astype(np.float32)
    points = np.argwhere(registration.mask)[::7]
    plain = registration.estimate(moved, init=np.zeros(6))
    prepared = registration.prepare(moved)
    again = registration.estimate(prepared, init=np.zeros(6))
    np.testing.assert_array_equal(again.params, plain.params)
    np.testing.assert_array_equal(
        registration.reslice_points(prepared, plain.params, points),
        registration.reslice_points(moved, plain.params, points),
    )
    other = RigidRegistration(ref, aff)
    with pytest.raises(ConfigError, match="registration that prepared it"):
        other.estimate(prepared)
    bad = moved.copy()
    bad[3, 3, 3] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        registration.prepare(bad)
