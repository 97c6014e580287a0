"""Bad volumes through the preprocess and estimate stages' handlers (no sockets): each is
flagged in its ``tr`` with its reason, keeps its TR slot, is logged and counted, and is kept
out of the running z-score and the GLM."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from realtime.stages.estimate import EstimateStage
from realtime.stages.preprocess import PreprocessStage
from rt_base.errors import ConfigError
from rt_wire.message import Message

SHAPE = (12, 14, 10)
TR = 1.5
N = 40
#: volume index -> how it is corrupted
FAULTS = {12: "nan", 18: "zero", 24: "slice", 30: "spike"}
REASON = {"nan": "nonfinite", "zero": "dropout", "slice": "dropped_slice", "spike": "spike"}


def _brain() -> np.ndarray:
    idx = np.indices(SHAPE, dtype=float)
    c = (np.asarray(SHAPE, float) - 1)[:, None, None, None] / 2
    return (((idx - c) / (0.45 * np.asarray(SHAPE, float))[:, None, None, None]) ** 2).sum(0) <= 1


def _roi() -> np.ndarray:
    roi = np.zeros(SHAPE, bool)
    roi[4:8, 5:9, 3:7] = True  # 64 voxels, inside the brain
    return roi


def corrupt(vol: np.ndarray, fault: str) -> np.ndarray:
    vol = vol.copy()
    if fault == "nan":
        vol[5, 6, 4] = np.nan  # an ROI voxel
        vol[0, 0, 0] = np.inf
    elif fault == "zero":
        vol[:] = 0
    elif fault == "slice":
        vol[:, :, 5] *= 0.02
    elif fault == "spike":
        vol *= 1.12
    return vol


def _volumes(faults=FAULTS) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    anatomy = np.where(_brain(), rng.uniform(700, 1300, SHAPE), 0.0)
    vols = [anatomy * (1 + 0.005 * rng.standard_normal(SHAPE)) for _ in range(N)]
    vols = [v.astype(np.float32) for v in vols]
    for k, fault in faults.items():
        vols[k] = corrupt(vols[k], fault)
    return vols


def _messages(vols, run="run-01") -> list[Message]:
    meta = {"tr": TR, "n_volumes": len(vols), "shape": list(SHAPE)}
    msgs = [Message("run_start", run=run, meta=meta)]
    for k, vol in enumerate(vols):
        msgs.append(
            Message("volume", run=run, index=k, meta={"time": TR * k}, buffers={"volume": vol})
        )
    msgs.append(Message("run_end", run=run, meta={"n_volumes": len(vols)}))
    return msgs


def _run(stage, msgs) -> list[Message]:
    return [o for m in msgs for o in stage.handle(m)]


def test_bad_volumes_are_flagged_with_their_reason_and_keep_their_slot(caplog):
    stage = PreprocessStage(_roi(), brain_mask=_brain())
    with caplog.at_level(logging.WARNING, logger="mindeye_rt.preprocess"):
        trs = [o for o in _run(stage, _messages(_volumes())) if o.kind == "tr"]
    assert [t.index for t in trs] == list(range(N))  # nothing dropped
    flagged = {t.index: t.meta["bad_volume"]["reasons"] for t in trs if "bad_volume" in t.meta}
    assert flagged == {k: [REASON[f]] for k, f in FAULTS.items()}
    for t in trs:
        assert np.all(np.isfinite(t.buffers["raw"])) and np.all(np.isfinite(t.buffers["z"]))
    assert trs[12].meta["bad_volume"]["details"] == {"nonfinite": 2}
    assert trs[24].meta["bad_volume"]["details"]["slices"] == [5]
    status = stage.status()
    assert status["bad_volumes"] == 4 and status["volume_checks"] is True
    assert status["bad_volume_reasons"] == {r: 1 for r in REASON.values()}
    lines = [r.getMessage() for r in caplog.records if "bad volume" in r.getMessage()]
    assert len(lines) == 4
    assert "run-01 TR 24" in lines[2] and "dropped_slice" in lines[2]


def test_a_bad_volume_stays_out_of_the_running_zscore():
    clean_vols = _volumes(faults={})
    bad_vols = [corrupt(v, "spike") if k == 20 else v for k, v in enumerate(clean_vols)]
    skipped = clean_vols[:20] + clean_vols[21:]
    z_bad = [o for o in _run(PreprocessStage(_roi()), _messages(bad_vols)) if o.kind == "tr"]
    z_skip = [o for o in _run(PreprocessStage(_roi()), _messages(skipped)) if o.kind == "tr"]
    assert "bad_volume" in z_bad[20].meta
    # every later volume is z-scored exactly as if the bad one had never come
    for later_bad, later_skip in zip(z_bad[21:], z_skip[20:], strict=True):
        np.testing.assert_array_equal(later_bad.buffers["z"], later_skip.buffers["z"])


def test_checks_can_be_off_or_tuned_and_bad_values_are_named():
    vols = _volumes(faults={30: "spike"})
    stage = PreprocessStage(_roi(), volume_checks=False)
    trs = [o for o in _run(stage, _messages(vols)) if o.kind == "tr"]
    assert not any("bad_volume" in t.meta for t in trs)
    assert stage.status()["volume_checks"] is False
    lenient = PreprocessStage(_roi(), volume_checks={"spike_min_change": 0.5})
    assert not any("bad_volume" in t.meta for t in _run(lenient, _messages(vols)) if t.kind == "tr")
    with pytest.raises(ConfigError, match="spike_z"):
        PreprocessStage(_roi(), volume_checks={"spike_z": -1})
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['spike'\]"):
        PreprocessStage(_roi(), volume_checks={"spike": 3})
    with pytest.raises(ConfigError, match="'volume_checks' must be"):
        PreprocessStage(_roi(), volume_checks="yes")


def test_an_upstream_flag_is_not_trusted():
    vols = _volumes(faults={})
    msgs = _messages(vols)
    msgs[5].meta["bad_volume"] = {"reasons": ["spike"]}  # a sender cannot censor a good volume
    trs = [o for o in _run(PreprocessStage(_roi()), msgs) if o.kind == "tr"]
    assert not any("bad_volume" in t.meta for t in trs)


# -- the estimate stage --------------------------------------------------------------------------

N_VOXELS = 6


def _tr(index, raw, bad=False) -> Message:
    meta = {"bad_volume": {"reasons": ["spike"], "details": {}}} if bad else {}
    return Message("tr", run="run-01", index=index, meta=meta, buffers={"raw": raw})


def _estimate_session(bad: dict[int, np.ndarray] | None = None, flagged=True) -> list[Message]:
    """Trials at 2, 6, 10 s; 20 TRs of 1 s; ``bad`` replaces those TRs' raw values."""
    rng = np.random.default_rng(3)
    start = Message("run_start", run="run-01", meta={"tr": 1.0, "n_volumes": 20})
    msgs = [start]
    trials = {2: 0, 6: 1, 10: 2}
    for k in range(20):
        if k in trials:
            meta = {"onset": float(k), "duration": 1.0, "image_id": k}
            msgs.append(Message("trial", run="run-01", index=trials[k], meta=meta))
        raw = rng.normal(1000, 10, N_VOXELS).astype(np.float32)
        is_bad = bad is not None and k in bad
        msgs.append(_tr(k, bad[k] if is_bad else raw, bad=is_bad and flagged))
    msgs.append(Message("run_end", run="run-01", meta={"n_volumes": 20}))
    return msgs


def _responses(msgs, stage=None):
    stage = stage or EstimateStage.from_spec({"n_voxels": N_VOXELS, "decode_delay": 4.0})
    outs = _run(stage, msgs)
    return {m.index: m for m in outs if m.kind == "response"}, outs, stage


@pytest.mark.parametrize("flagged", [True, False])
def test_the_estimate_stage_censors_bad_trs(flagged):
    poison = np.full(N_VOXELS, np.nan, np.float32)
    poison[0] = 1e9
    responses, outs, stage = _responses(_estimate_session({7: poison}, flagged), None)
    clean, _, _ = _responses(_estimate_session())
    assert sorted(responses) == [0, 1, 2]
    for r in responses.values():
        assert np.all(np.isfinite(r.buffers["response"]))
    # trial 0 (decode volume 6) never saw volume 7: identical to the clean run
    np.testing.assert_array_equal(responses[0].buffers["response"], clean[0].buffers["response"])
    assert "censored_frames" not in responses[0].meta
    # trial 1 (onset 6 s, decode volume 10): volume 7 was in its response
    assert responses[1].meta["censored_frames"] == [7] and responses[1].meta["degraded"]
    assert responses[2].meta["censored_frames"] == [7] and not responses[2].meta["degraded"]
    status = stage.status()
    assert status["censored"] == 1 and status["degraded"] == 1


def test_a_trial_whose_response_is_all_censored_is_a_missed_trial_not_an_error():
    junk = np.zeros(N_VOXELS, np.float32)
    responses, outs, stage = _responses(_estimate_session({k: junk for k in range(6, 11)}))
    assert sorted(responses) == [0, 2]
    gaps = [m.meta for m in outs if m.kind == "gap"]
    assert gaps == [{"stage": "estimate", "missed_trials": [1]}]
    assert stage.counters["errors"] == 0


def test_a_bad_first_volume_is_not_the_motion_reference():
    from tests.realtime.test_preprocess_motion import MOTIONS, _messages, _roi

    msgs = list(_messages(MOTIONS[1:]))  # three volumes, each moved differently
    msgs[1].buffers["volume"][:] = 0  # volume 0: a dropout
    stage = PreprocessStage(_roi(), motion="estimate")
    outs = _run(stage, msgs)
    trs = [o for o in outs if o.kind == "tr"]
    assert [t.index for t in trs] == [0, 1, 2]  # the bad one waited for the reference, in order
    assert trs[0].meta["bad_volume"]["reasons"] == ["dropout"] and "motion" not in trs[0].meta
    np.testing.assert_allclose(trs[1].meta["motion"]["params"], 0, atol=1e-3)  # the reference
    assert np.abs(trs[2].meta["motion"]["params"]).max() > 0.2
