"""``stream --finetune between-runs`` on the tiny subject: a step after run 1 in its own process,
its weights swapped in at run 2's start (or kept out when they validate worse), nothing lost."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch

from mindeye_models.checkpoint import load_checkpoint, save_checkpoint
from realtime.config import StreamConfig
from realtime.finetune_options import parse_budget
from realtime.pipeline import run_stream
from realtime.stages.finetune_wait import FinetuneWait
from rt_base.errors import ConfigError


def _config(dataset, checkpoint, tmp_path, base_port, **changes) -> StreamConfig:
    cfg = StreamConfig(
        replay=str(dataset.root),
        out=str(tmp_path / "s"),
        speed=0,
        headless=True,
        checkpoint=str(checkpoint),
        launcher="thread",
        base_port=base_port,
        quiet=True,
        recon="none",
        finetune="between-runs",
        finetune_budget="60s",
        decode_precision="fp32",  # the embeddings are compared with the float model's own
    )
    return dataclasses.replace(cfg, **changes)


@pytest.fixture(scope="module")
def new_subject_model(tiny_model, tmp_path_factory):
    """The tiny model with a freshly initialised input layer: a subject it was not trained on,
    as far as ``lin0`` goes (what fine-tuning between runs is for)."""
    model, extra = load_checkpoint(tiny_model)
    torch.manual_seed(3)
    model.backbone.lin0[0].reset_parameters()
    return save_checkpoint(model, tmp_path_factory.mktemp("fresh") / "fresh", extra)


def _embeddings_by_run(out) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Per run, each decoded trial's (response, recorded embedding)."""
    runs: dict[str, list] = {}
    with open(out / "retrievals.tsv") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            n = int(row["n"])
            response = np.load(out / "trials" / f"{n:04d}_response.npy")
            embedding = np.load(out / "trials" / f"{n:04d}_embedding.npy")
            runs.setdefault(row["run"], []).append((response, embedding))
    return runs


def _predicts(model, pairs) -> bool:
    """Whether ``model`` gives the recorded embedding of every (response, embedding) pair."""
    x = torch.from_numpy(np.stack([r for r, _ in pairs]))
    with torch.no_grad():
        _, projected = model.eval()(x)
    return np.allclose(projected.numpy(), np.stack([e for _, e in pairs]), atol=1e-5)


def _steps(out) -> list[dict]:
    return [
        json.loads(line)
        for line in (out / "finetune" / "steps.jsonl").read_text().split("\n")
        if line
    ]


@pytest.mark.slow
def test_a_better_model_is_swapped_in_at_the_next_run(
    tiny_dataset, new_subject_model, tmp_path, base_port, data_home
):
    cfg = _config(tiny_dataset, new_subject_model, tmp_path, base_port)
    s = run_stream(cfg, log=lambda *a: None)
    out = tmp_path / "s"
    run1, run2 = tiny_dataset.runs
    # nothing lost: every volume and every trial of both runs
    assert s["complete"] and s["volumes_lost"] == 0 and s["nothing_lost"]
    assert s["trials"] == sum(len(tiny_dataset.events(r)) for r in tiny_dataset.runs)
    steps = _steps(out)
    step = next(r for r in steps if r["event"] == "step")
    assert step["after_run"] == run1 and step["outcome"] == "accepted", step
    assert step["after"]["mean_rank"] <= step["before"]["mean_rank"]
    swap = next(r for r in steps if r["event"] == "swap")
    assert swap["run"] == run2 and swap["step"] == 1
    weights = out / "finetune" / "step-01" / "model.safetensors"
    assert (
        swap["weights"] == str(weights) and (out / "finetune" / "step-01" / "model.json").is_file()
    )
    # run 1 was decoded by the initial model, every trial of run 2 by the swapped one
    initial, _ = load_checkpoint(new_subject_model)
    swapped, extra = load_checkpoint(weights)
    assert extra["finetuned"]["after_run"] == run1
    by_run = _embeddings_by_run(out)
    assert _predicts(initial, by_run[run1]) and not _predicts(swapped, by_run[run1])
    assert _predicts(swapped, by_run[run2]) and not _predicts(initial, by_run[run2])
    ft = s["finetune"]
    assert ft["runs"][run1]["model"] == "initial" and ft["runs"][run2]["model"] == "step-01"
    assert [x["outcome"] for x in ft["steps"]][0] == "accepted"
    # a rerun of the record swaps the recorded weights in at the same run: same retrievals
    from realtime.rerun import rerun_session

    _, diff, _ = rerun_session(out, tmp_path / "rerun", log=lambda *a: None)
    assert diff["trials"] == s["trials"] and diff["same"] == s["trials"], diff["rows"][:3]
    assert not (tmp_path / "rerun" / "finetune" / "step-01").exists()  # no step ran again


@pytest.mark.slow
def test_a_model_that_validates_worse_is_not_swapped(
    tiny_dataset, tiny_model, tmp_path, base_port, data_home
):
    def ruin(prep):  # an absurd learning rate: the step's model validates worse
        prep.specs["decode"]["finetune"].update(lr=50.0, params="all")
        return prep

    cfg = _config(tiny_dataset, tiny_model, tmp_path, base_port)
    lines = []
    s = run_stream(cfg, log=lines.append, adjust=ruin)
    out = tmp_path / "s"
    run1, run2 = tiny_dataset.runs
    assert s["complete"] and s["volumes_lost"] == 0 and s["nothing_lost"]
    step = _steps(out)[0]
    assert step["after_run"] == run1 and step["outcome"] in ("rejected", "failed"), step
    assert not any(r["event"] == "swap" for r in _steps(out))
    assert not (out / "finetune" / "step-01" / "model.safetensors").exists()
    initial, _ = load_checkpoint(tiny_model)
    by_run = _embeddings_by_run(out)
    assert _predicts(initial, by_run[run1]) and _predicts(initial, by_run[run2])
    assert s["finetune"]["runs"][run2]["model"] == "initial"
    assert any("fine-tune step 1 after" in line and "rejected" in line for line in lines), lines


def test_a_source_waits_no_longer_than_its_limit():
    import time

    import zmq

    wait = FinetuneWait("tcp://127.0.0.1:1", timeout_s=0.3)
    wait.open(zmq.Context.instance())
    start = time.monotonic()
    try:
        assert wait.wait("run-01", lambda: False, lambda: None) is False
    finally:
        wait.close()
    assert 0.3 <= time.monotonic() - start < 1.0


def test_budget_and_mode_options():
    assert parse_budget("60s") == 60.0 and parse_budget("1.5min") == 90.0 and parse_budget(45) == 45
    with pytest.raises(ConfigError, match="finetune_budget"):
        parse_budget("soon")
    with pytest.raises(ConfigError, match="finetune"):
        StreamConfig(finetune="always")
    assert StreamConfig(finetune_budget="2min").finetune_budget == 120.0


def test_alpha_and_verdict_options():
    cfg = StreamConfig(finetune_alphas="1, 0.5", finetune_verdict="mrr")
    assert cfg.finetune_alphas == (0.5, 1.0) and cfg.finetune_verdict == "mrr"
    assert StreamConfig().finetune_alphas is None  # the step's default
    with pytest.raises(ConfigError, match="finetune_alphas"):
        StreamConfig(finetune_alphas="0,1")
    with pytest.raises(ConfigError, match="finetune_verdict"):
        StreamConfig(finetune_verdict="loss")


def test_the_log_and_the_summary_describe_a_step_in_the_same_words():
    from realtime.stages.decode_finetune import describe_step
    from realtime.summary_finetune import finetune_lines

    step = {
        "step": 2,
        "after_run": "run-02",
        "outcome": "accepted",
        "alpha": 0.5,
        "reason": "held-out retrieval improved (alpha 0.5)",
        "n_val": 35,
        "before": {"top1": 0.37, "mean_rank": 9.69, "mrr": 0.5, "ways": 148},
        "after": {"top1": 0.37, "mean_rank": 4.29, "mrr": 0.55, "ways": 148},
        "seconds": 14.8,
    }
    text = describe_step(step)
    assert text.startswith("fine-tune step 2 after run-02: accepted (alpha 0.5); held-out (35")
    assert "mean rank 9.69 -> 4.29" in text and "MRR 0.500 -> 0.550" in text and "14.8 s" in text
    skipped = {"after_run": "run-01", "outcome": "skipped", "reason": "too few trials"}
    assert describe_step(skipped).startswith("fine-tune after run-01: skipped (too few")
    ft = {"steps": [skipped, step], "swaps": [], "runs": {}}
    assert finetune_lines({"finetune": ft}) == [describe_step(skipped), text]


def _finetuner(tmp_path, checkpoint, n_trials=20, **kwargs):
    """A finetuner on random responses of the checkpoint's voxel count, and the run it saw."""
    from mindeye_models.bank import ImageBank
    from mindeye_models.checkpoint import read_sidecar
    from realtime.stages.decode_finetune import BetweenRunsFinetuner

    config = read_sidecar(checkpoint)["config"]
    rng = np.random.default_rng(0)
    ids = np.arange(10)
    bank = ImageBank(ids, rng.normal(size=(10, config["n_tokens"], config["clip_dim"])))
    reports = []
    ft = BetweenRunsFinetuner(
        tmp_path / "finetune",
        checkpoint,
        bank,
        report=lambda level, text: reports.append((level, text)),
        **kwargs,
    )
    for i in range(n_trials):
        ft.observe("run-01", i, int(ids[i % 10]), rng.normal(size=config["n_voxels"]))
    ft.observe("run-01", n_trials, None, rng.normal(size=config["n_voxels"]))  # no image: left
    return ft, reports


def _settle(ft, limit_s=60.0):
    import time

    start = time.monotonic()
    while not ft.poll():
        assert time.monotonic() - start < limit_s, "the step never settled"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_step_over_its_budget_is_stopped_and_reported(tmp_path, tiny_model, monkeypatch):
    from realtime.stages import decode_finetune

    monkeypatch.setattr(decode_finetune, "KILL_GRACE_S", 0.0)  # a step cannot load in 1 s
    ft, reports = _finetuner(tmp_path, tiny_model, budget_s=1.0)
    assert len(ft.trials) == 20
    ft.run_ended("run-01")
    assert ft.status()["finetune_state"] == "running" and ft.status()["finetune_settled"] == []
    _settle(ft)
    assert ft.status()["finetune_settled"] == ["run-01"] and ft.proc is None
    assert ft.take_swap("run-02") is None and ft.status()["finetune_model"] == "initial"
    step = _steps(tmp_path)[0]
    assert step["outcome"] == "timeout" and not step["accepted"], step
    assert any(level == "warning" and "timeout" in text for level, text in reports), reports


@pytest.mark.slow
def test_a_failed_step_and_too_few_trials_are_settled_and_reported(tmp_path, tiny_model):
    ft, reports = _finetuner(tmp_path, tiny_model, n_trials=4)
    ft.run_ended("run-01")  # 4 trials: skipped, no process
    assert ft.proc is None and ft.status()["finetune_settled"] == ["run-01"]
    for i in range(20):  # then a step whose checkpoint is gone: the process fails
        ft.observe("run-02", i, i % 10, np.zeros_like(ft.trials[0][0]))
    ft.current = str(tmp_path / "gone.safetensors")
    ft.run_ended("run-02")
    _settle(ft)
    assert ft.take_swap("run-03") is None
    outcomes = [(s["after_run"], s["outcome"]) for s in _steps(tmp_path)]
    assert outcomes == [("run-01", "skipped"), ("run-02", "failed")], outcomes
    assert ft.status()["finetune_settled"] == ["run-01", "run-02"]
    assert any(level == "warning" and "failed" in text for level, text in reports), reports


def test_a_finetuner_hands_alphas_and_verdict_to_its_steps(tmp_path, tiny_model):
    ft, _ = _finetuner(tmp_path, tiny_model, step_options={"alphas": [1, 0.5], "verdict": "mrr"})
    assert ft.config["alphas"] == (0.5, 1.0) and ft.config["verdict"] == "mrr"
    with pytest.raises(ConfigError, match="alphas"):
        _finetuner(tmp_path, tiny_model, step_options={"alphas": [2.0]})


def test_a_step_whose_result_is_written_is_settled_without_waiting_for_its_exit(
    tmp_path, tiny_model
):
    """result.json is written last: once it is there the step is over, even while the process
    is still tearing down (seconds on a busy CPU); the process is stopped."""
    import subprocess
    import sys
    import time

    from rt_base.atomic import write_json

    ft, _ = _finetuner(tmp_path, tiny_model)
    job_dir = tmp_path / "finetune" / "step-01"
    job_dir.mkdir(parents=True)
    ft.job = {"step": 1, "after_run": "run-01", "dir": str(job_dir), "launched_at": time.time()}
    ft.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert ft.poll() is False  # no result yet: still running
    write_json(job_dir / "result.json", {"accepted": False, "reason": "did not improve"})
    start = time.monotonic()
    assert ft.poll() is True and ft.proc is None
    assert time.monotonic() - start < 5
    step = _steps(tmp_path)[0]
    assert step["outcome"] == "rejected" and ft.status()["finetune_settled"] == ["run-01"]
