"""Motion correction in the preprocess stage: parameters and FD in each ``tr``, the ROI sampled
where the head moved it, a volume-number reference, and the grid checks."""

from __future__ import annotations

import numpy as np
import pytest

from fmri_compute.rigid import framewise_displacement, move_volume
from realtime.stages.preprocess import PreprocessStage
from realtime.stages.preprocess_motion import parse_reference
from rt_base.errors import ConfigError
from rt_wire.message import Message

SHAPE = (28, 32, 26)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def _head() -> np.ndarray:
    """A smooth head-like volume with internal structure (the fit needs gradients)."""
    idx = np.indices(SHAPE).astype(float)
    c = (np.array(SHAPE) - 1)[:, None, None, None] / 2
    r = np.sqrt((((idx - c) / np.array([10, 12, 9])[:, None, None, None]) ** 2).sum(0))
    head = 1000 * np.clip(1.2 - r, 0, 1) ** 0.5
    head += 200 * np.sin(idx[0] / 2.5) * np.cos(idx[1] / 3.0) * (r < 1)
    return head.astype(np.float32)


def _roi() -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    mask[10:18, 12:20, 9:16] = True
    return mask


MOTIONS = np.array(
    [
        [0, 0, 0, 0, 0, 0],
        [0.3, -0.2, 0.1, 0.2, 0.0, -0.1],
        [0.8, -0.5, 0.4, 0.5, 0.3, -0.4],
        [1.5, -0.5, 0.9, 1.0, 0.6, -0.8],
    ]
)


def _messages(motions=MOTIONS, run="run-01"):
    ref = _head()
    meta = {"tr": 1.5, "n_volumes": len(motions), "shape": list(SHAPE), "affine": AFFINE.tolist()}
    yield Message("run_start", run=run, meta=meta)
    for k, p in enumerate(motions):
        vol = move_volume(ref, AFFINE, p) if np.any(p) else ref.copy()
        yield Message("volume", run=run, index=k, meta={"time": 1.5 * k}, buffers={"volume": vol})


def _trs(stage, msgs):
    return [o for m in msgs for o in stage.handle(m) if o.kind == "tr"]


def test_correct_reports_the_motion_and_restores_the_roi():
    stage = PreprocessStage(_roi(), motion="correct", fd_threshold=0.5)
    trs = _trs(stage, _messages())
    est = np.array([t.meta["motion"]["params"] for t in trs])
    np.testing.assert_allclose(est, MOTIONS, atol=0.05)
    fd = [t.meta["motion"]["fd"] for t in trs]
    np.testing.assert_allclose(fd, framewise_displacement(est), atol=1e-3)
    assert trs[0].meta["motion"]["mode"] == "correct"
    ref_roi = _head()[_roi()]
    for t in trs[1:]:  # the ROI is back where it was: far closer than uncorrected
        err = np.abs(t.buffers["raw"] - ref_roi).mean()
        assert err < 0.02 * np.abs(ref_roi).mean()
    moved = _trs(PreprocessStage(_roi(), motion="estimate"), _messages())
    assert (
        np.abs(moved[-1].buffers["raw"] - ref_roi).mean()
        > 5 * np.abs(trs[-1].buffers["raw"] - ref_roi).mean()
    )
    status = stage.status()
    assert status["fd_over_threshold"] == sum(f > 0.5 for f in fd) and status["fd_over_threshold"]
    assert status["max_fd"] == pytest.approx(max(fd), abs=1e-3)


def test_estimate_leaves_the_values_as_acquired_and_none_reports_nothing():
    msgs = list(_messages())
    est = _trs(PreprocessStage(_roi(), motion="estimate"), msgs)
    none = _trs(PreprocessStage(_roi()), msgs)
    for a, b in zip(est, none, strict=True):
        np.testing.assert_array_equal(a.buffers["raw"], b.buffers["raw"])
        assert "motion" in a.meta and "motion" not in b.meta


def test_fd_restarts_at_each_run_and_one_reference_serves_the_session():
    stage = PreprocessStage(_roi(), motion="estimate")
    first = _trs(stage, _messages())
    second = _trs(stage, _messages(MOTIONS[::-1], run="run-02"))
    assert first[0].meta["motion"]["fd"] == 0 and second[0].meta["motion"]["fd"] == 0
    # run-02 starts where the head is (1.5 mm away from the session's first volume)
    np.testing.assert_allclose(second[0].meta["motion"]["params"], MOTIONS[-1], atol=0.05)


def test_a_volume_number_reference_holds_the_volumes_before_it():
    stage = PreprocessStage(_roi(), motion="estimate", motion_ref=2)
    outs = [o for m in _messages() for o in stage.handle(m)]
    trs = [o for o in outs if o.kind == "tr"]
    assert [t.index for t in trs] == [0, 1, 2, 3]  # in order, none lost
    est = np.array([t.meta["motion"]["params"] for t in trs])
    np.testing.assert_allclose(est[2], 0, atol=1e-3)  # volume 2 is the reference
    np.testing.assert_allclose(est[0], -MOTIONS[2], atol=0.1)  # roughly the opposite motion


def test_the_reference_that_never_came_falls_back_to_the_first_held_volume():
    stage = PreprocessStage(_roi(), motion="estimate", motion_ref=50)
    msgs = [*_messages(), Message("run_end", run="run-01", meta={"n_volumes": 4})]
    outs = [o for m in msgs for o in stage.handle(m)]
    assert [o.kind for o in outs].count("tr") == 4 and outs[-1].kind == "run_end"


def test_bad_options_and_grids(tmp_path):
    with pytest.raises(ConfigError, match="'motion' must be one of"):
        PreprocessStage(_roi(), motion="fix")
    with pytest.raises(ConfigError, match="motion_ref"):
        parse_reference(str(tmp_path / "missing.nii"))
    with pytest.raises(ConfigError, match="motion_ref"):
        parse_reference(True)
    assert parse_reference("7") == 7 and parse_reference("first") == "first"
    import nibabel as nib

    path = tmp_path / "roi.nii.gz"
    nib.save(nib.Nifti1Image(_roi().astype(np.uint8), AFFINE), path)
    stage = PreprocessStage(str(path))
    shifted = AFFINE.copy()
    shifted[:3, 3] = 5.0
    meta = {"tr": 1.5, "n_volumes": 2, "shape": list(SHAPE), "affine": shifted.tolist()}
    with pytest.raises(ConfigError, match="another grid than the mask"):
        stage.handle(Message("run_start", run="r", meta=meta))


def test_a_volume_whose_motion_cannot_be_measured_is_used_as_acquired():
    stage = PreprocessStage(_roi(), motion="correct")
    msgs = list(_messages())
    bad = msgs[2].buffers["volume"].copy()
    bad[0, 0, 0] = np.nan
    msgs[2] = Message("volume", run="run-01", index=1, meta={}, buffers={"volume": bad})
    trs = _trs(stage, msgs)
    assert [t.index for t in trs] == [0, 1, 2, 3]  # nothing lost
    assert "motion" not in trs[1].meta and "motion" in trs[2].meta
