"""``stream --finetune-rehearsal FILE --finetune-l2sp L``: the options' checks, a step that
trains on the file's trials too (and refuses a file changed since the session recorded it),
and a streamed session of the tiny subject that records the file by path and sha256."""

from __future__ import annotations

import json

import numpy as np
import pytest

from realtime.finetune_rehearsal import rehearsal_from_dataset
from realtime.finetune_step import run_step, write_job
from rt_base.errors import ConfigError
from tests.realtime.test_finetune_between_runs import _config  # one stream config


@pytest.fixture(scope="module")
def rehearsal(tiny_dataset, tiny_model, tmp_path_factory):
    """The tiny subject's training session as a rehearsal file."""
    return rehearsal_from_dataset(
        tiny_dataset, tiny_model, tmp_path_factory.mktemp("rehearsal") / "first.npz"
    )


def test_the_options_are_checked_before_anything_runs(
    tiny_dataset, tiny_model, rehearsal, tmp_path
):
    def config(**changes):
        return _config(tiny_dataset, tiny_model, tmp_path, 20000, **changes)

    assert config(finetune_rehearsal=str(rehearsal)).finetune_rehearsal == str(rehearsal)
    assert config(finetune_rehearsal="none").finetune_rehearsal is None
    assert config(finetune_l2sp="10").finetune_l2sp == 10.0
    with pytest.raises(ConfigError, match="does not exist"):
        config(finetune_rehearsal=str(tmp_path / "missing.npz"))
    (tmp_path / "bad.npz").write_bytes(b"PK no zip")
    with pytest.raises(ConfigError, match="not an .npz"):
        config(finetune_rehearsal=str(tmp_path / "bad.npz"))
    with pytest.raises(ConfigError, match="finetune_rehearsal"):
        config(finetune_rehearsal=3)
    for bad in (-1, "a lot", 1e9):
        with pytest.raises(ConfigError, match="finetune_l2sp"):
            config(finetune_l2sp=bad)
    import argparse

    from realtime.cli import _add_stream

    parser = argparse.ArgumentParser()
    _add_stream(parser.add_subparsers(dest="command"))
    argv = ["stream", "--finetune-rehearsal", str(rehearsal), "--finetune-l2sp", "10"]
    args = parser.parse_args(argv)
    assert args.finetune_rehearsal == str(rehearsal) and args.finetune_l2sp == "10"


def test_a_step_rehearses_the_file_and_refuses_it_changed(tiny_model, rehearsal, tmp_path):
    from mindeye_models.bank import ImageBank
    from mindeye_models.checkpoint import read_sidecar
    from mindeye_models.finetune_rehearsal import read_rehearsal, rehearsal_record

    config = read_sidecar(tiny_model)["config"]
    rng = np.random.default_rng(0)
    ids = np.arange(10)
    bank = ImageBank(ids, rng.normal(size=(10, config["n_tokens"], config["clip_dim"])))
    bank.save(tmp_path / "targets.safetensors")
    data = {
        "voxels": rng.normal(size=(40, config["n_voxels"])).astype(np.float32),
        "image_ids": ids[np.arange(40) % 10],
    }
    job = {
        "step": 1,
        "after_run": "run-01",
        "checkpoint": str(tiny_model),
        "targets": str(tmp_path / "targets.safetensors"),
        "config": {"epochs": 2, "batch_size": 8, "holdout": "trials", "l2sp": 10.0},
        "budget_s": 60.0,
        "rehearsal": rehearsal_record(rehearsal),
    }
    result = run_step(write_job(tmp_path / "step-01", data, job), lower_priority=False)
    assert result["n_rehearsal"] == len(read_rehearsal(rehearsal)) > 100
    assert result["batches_run"] == 2 * (result["n_train"] // 8)
    assert result["config"]["l2sp"] == 10.0
    job["rehearsal"] = {**job["rehearsal"], "sha256": "0" * 64}  # not the file's content
    with pytest.raises(ConfigError, match="changed since the session recorded it"):
        run_step(write_job(tmp_path / "step-02", data, job), lower_priority=False)


@pytest.mark.slow
def test_a_streamed_session_records_the_rehearsal_file_and_uses_it(
    tiny_dataset, tiny_model, rehearsal, tmp_path, base_port, data_home
):
    from mindeye_models.finetune_rehearsal import rehearsal_record

    cfg = _config(tiny_dataset, tiny_model, tmp_path, base_port, finetune_rehearsal=str(rehearsal))
    s = run_stream_quiet(cfg)
    out = tmp_path / "s"
    assert s["complete"] and s["volumes_lost"] == 0 and s["nothing_lost"]
    record = rehearsal_record(rehearsal)
    lines = [json.loads(x) for x in (out / "finetune" / "steps.jsonl").read_text().splitlines()]
    assert lines[0] == {**record, "event": "rehearsal", "time": lines[0]["time"]}
    job = json.loads((out / "finetune" / "step-01" / "job.json").read_text())
    assert job["rehearsal"] == record
    result = json.loads((out / "finetune" / "step-01" / "result.json").read_text())
    assert result["n_rehearsal"] == record["n_trials"] and result["batches_run"] > 0
    assert json.loads((out / "config.json").read_text())["config"]["finetune_rehearsal"] == str(
        rehearsal
    )


def run_stream_quiet(cfg):
    from realtime.pipeline import run_stream

    return run_stream(cfg, log=lambda *a: None)
