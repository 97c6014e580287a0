"""The preprocess stage's handler, called with messages directly (no sockets)."""

from __future__ import annotations

import numpy as np
import pytest

from realtime.stages.preprocess import PreprocessStage
from rt_base.errors import ConfigError, MessageError
from rt_wire.message import Message

SHAPE = (4, 5, 3)


def _mask() -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    mask[1:3, 1:4, 1] = True  # 6 voxels
    return mask


def _run_start(n_volumes: int = 6, shape=SHAPE) -> Message:
    meta = {"tr": 1.5, "n_volumes": n_volumes, "shape": list(shape)}
    return Message("run_start", run="run-01", meta=meta)


def _volume(index: int, run: str = "run-01", shape=SHAPE) -> Message:
    """A volume whose every voxel holds ``100 + index``: a dropped or repeated one shows."""
    vol = np.full(shape, 100.0 + index, np.float32)
    return Message(
        "volume", run=run, index=index, meta={"time": 1.5 * index}, buffers={"volume": vol}
    )


def _feed(stage: PreprocessStage, msgs: list[Message]) -> list[Message]:
    return [out for msg in msgs for out in stage.handle(msg)]


def test_each_volume_becomes_a_masked_tr():
    stage = PreprocessStage(_mask())
    outs = _feed(stage, [_run_start(3), *(_volume(k) for k in range(3))])
    assert [m.kind for m in outs] == ["run_start", "tr", "tr", "tr"]
    trs = outs[1:]
    assert [m.index for m in trs] == [0, 1, 2]
    for k, tr in enumerate(trs):
        assert tr.run == "run-01" and tr.meta["time"] == 1.5 * k
        np.testing.assert_array_equal(tr.buffers["raw"], np.full(6, 100.0 + k, np.float32))
        assert tr.buffers["raw"].dtype == np.float32 and tr.buffers["z"].shape == (6,)
    assert np.all(trs[2].buffers["z"] > 0)  # the newest volume is above the running mean
    assert stage.status()["run"] == "run-01"


def test_lost_volumes_are_reported_as_gaps_and_repeats_dropped():
    stage = PreprocessStage(_mask())
    msgs = [_run_start(6), _volume(0), _volume(1), _volume(3), _volume(3), _volume(4)]
    outs = _feed(stage, [*msgs, Message("run_end", run="run-01")])
    gaps = [m.meta for m in outs if m.kind == "gap"]
    assert gaps[0]["lost_volumes"] == [2]
    assert gaps[1]["repeated_volumes"] == [3]
    assert gaps[2]["lost_volumes"] == [5]  # never arrived before the run's end
    assert [m.index for m in outs if m.kind == "tr"] == [0, 1, 3, 4]
    assert outs[-1].kind == "run_end"
    status = stage.status()
    assert status["volumes_lost"] == 2 and status["volumes_repeated"] == 1


def test_an_operators_stop_does_not_count_unsent_volumes_as_lost():
    stage = PreprocessStage(_mask())
    stop = Message("run_end", run="run-01", meta={"stopped": True, "n_volumes_sent": 2})
    outs = _feed(stage, [_run_start(6), _volume(0), _volume(1), stop])
    assert not [m for m in outs if m.kind == "gap"]
    assert stage.status()["volumes_lost"] == 0


def test_a_volume_outside_its_run_is_a_bad_message():
    stage = PreprocessStage(_mask())
    with pytest.raises(MessageError, match=r"volume 0 of run 'run-01' arrived outside its run"):
        stage.handle(_volume(0))
    stage.handle(_run_start())
    with pytest.raises(MessageError, match="run 'run-02'"):
        stage.handle(_volume(1, run="run-02"))


def test_a_volume_of_the_wrong_shape_is_a_bad_message():
    stage = PreprocessStage(_mask())
    stage.handle(_run_start())
    with pytest.raises(MessageError, match=r"mask's shape \(4, 5, 3\), got \(4, 5, 2\)"):
        stage.handle(_volume(0, shape=(4, 5, 2)))
    no_buffer = Message("volume", run="run-01", index=0)
    with pytest.raises(MessageError, match="got None"):
        stage.handle(no_buffer)


def test_a_run_whose_volumes_do_not_fit_the_mask_is_a_config_error():
    stage = PreprocessStage(_mask())
    with pytest.raises(ConfigError, match=r"give the mask of this dataset \(--mask\)"):
        stage.handle(_run_start(shape=(8, 8, 8)))


def test_a_mask_that_is_not_a_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="'mask' must be an existing NIfTI file"):
        PreprocessStage.from_spec({"mask": str(tmp_path / "none.nii.gz")})
