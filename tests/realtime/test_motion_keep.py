"""A restarted preprocess stage takes back the motion reference and each run's starting
parameters its previous process kept (``motion_state_dir``), and corrects the run it handles
again exactly as that process did; a first start never reads what a folder holds."""

from __future__ import annotations

import numpy as np

from realtime.stages.motion_keep import KeptMotionState
from realtime.stages.preprocess import PreprocessStage
from tests.realtime.test_preprocess_motion import MOTIONS, _head, _messages, _roi, _trs


def _stage(keep, incarnation=0):
    return PreprocessStage(
        _roi(), motion="correct", motion_state_dir=str(keep), incarnation=incarnation
    )


def _params(trs):
    return np.array([t.meta["motion"]["params"] for t in trs])


def test_a_restarted_stage_corrects_a_run_again_as_the_one_that_died(tmp_path):
    keep = tmp_path / "motion"
    died = _stage(keep)
    _trs(died, _messages())
    run2 = _trs(died, _messages(MOTIONS[::-1], run="run-02"))
    # restarted in run-02: its upstream sends run-02 again from its start
    again = _stage(keep, incarnation=1)
    redo = _trs(again, _messages(MOTIONS[::-1], run="run-02"))
    assert len(redo) == len(run2) == len(MOTIONS)
    for a, b in zip(run2, redo, strict=True):
        np.testing.assert_array_equal(a.buffers["raw"], b.buffers["raw"])
        assert a.meta["motion"] == b.meta["motion"]
    # registered to the session's reference: run-02 starts 1.5 mm away from it
    np.testing.assert_allclose(_params(redo)[0], MOTIONS[-1], atol=0.05)


def test_without_the_kept_state_the_first_volume_is_the_reference(tmp_path):
    keep = tmp_path / "motion"
    died = _stage(keep)
    _trs(died, _messages())
    # a first start (incarnation 0) in a folder that holds a kept state does not read it
    fresh = _trs(_stage(keep), _messages(MOTIONS[::-1], run="run-02"))
    np.testing.assert_allclose(_params(fresh)[0], 0, atol=1e-6)
    # a restarted stage with nothing kept (killed before the first volume) does the same
    empty = _trs(_stage(tmp_path / "none", incarnation=1), _messages(MOTIONS[::-1], run="run-02"))
    np.testing.assert_allclose(_params(empty)[0], 0, atol=1e-6)


def test_a_kept_reference_of_another_grid_is_not_used(tmp_path):
    keep = KeptMotionState(tmp_path / "motion")
    keep.save_reference(np.zeros((4, 4, 4), np.float32))
    stage = _stage(tmp_path / "motion", incarnation=1)
    lines = []
    stage.report = lambda level, text: lines.append((level, text))
    trs = _trs(stage, _messages())
    np.testing.assert_allclose(_params(trs), MOTIONS, atol=0.05)  # its first volume serves
    assert any("not the mask's" in text for _, text in lines), lines


def test_the_kept_state_round_trips(tmp_path):
    keep = KeptMotionState(tmp_path / "m")
    assert keep.reference() is None and keep.start_of("run-01") == (False, None)
    vol = _head()
    keep.save_reference(vol)
    keep.save_start("run-01", None)
    keep.save_start("run-02", np.arange(6.0))
    back = KeptMotionState(tmp_path / "m")
    back.load_starts()
    np.testing.assert_array_equal(back.reference(), vol)
    assert back.start_of("run-01") == (True, None)
    kept, params = back.start_of("run-02")
    assert kept and params.tolist() == list(range(6))
    assert not list((tmp_path / "m").glob(".partial-*"))  # written through atomic renames
