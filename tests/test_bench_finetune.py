"""``benchmarks/finetune_subj02.py``: the per-run split into repeats and first showings."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "finetune_subj02.py"


def _load():
    spec = importlib.util.spec_from_file_location("finetune_subj02", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["finetune_subj02"] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop("finetune_subj02", None)
    return module


def test_per_run_splits_repeats_from_first_showings(tmp_path):
    rows = [  # run, image, rank ("" = not in the bank: not scored)
        ("run-01", 1, "1"),
        ("run-01", 2, "3"),
        ("run-01", 9, ""),
        ("run-02", 1, "2"),  # a repeat, missed
        ("run-02", 2, "1"),  # a repeat, hit
        ("run-02", 3, "1"),  # first showing, hit
        ("run-02", 4, "5"),  # first showing, missed
        ("run-02", 9, ""),  # shown before but not scored: in no group
        ("run-03", 4, "1"),
    ]
    lines = ["run\timage_id\trank"] + [f"{r}\t{i}\t{k}" for r, i, k in rows]
    (tmp_path / "retrievals.tsv").write_text("\n".join(lines) + "\n")
    runs = _load().per_run(tmp_path)
    assert list(runs) == ["run-01", "run-02", "run-03"]
    assert runs["run-01"]["all"] == {"n": 2, "top1": 0.5}
    assert runs["run-01"]["repeats"] == {"n": 0, "top1": None}
    assert runs["run-01"]["unseen"] == {"n": 2, "top1": 0.5}
    assert runs["run-02"]["repeats"] == {"n": 2, "top1": 0.5}
    assert runs["run-02"]["unseen"] == {"n": 2, "top1": 0.5}
    assert runs["run-02"]["all"] == {"n": 4, "top1": 0.5}
    assert runs["run-03"]["repeats"] == {"n": 1, "top1": 1.0}  # image 4: run-02 showed it


def test_step_results_reads_each_steps_process_figures_in_order(tmp_path):
    import json

    for n, alpha in ((2, None), (1, 0.5)):
        folder = tmp_path / "finetune" / f"step-{n:02d}"
        folder.mkdir(parents=True)
        result = {"step": n, "accepted": alpha is not None, "alpha": alpha, "batches_run": 7}
        (folder / "result.json").write_text(json.dumps({**result, "before": {}}))
    rows = _load().step_results(tmp_path)
    assert [r["step"] for r in rows] == [1, 2] and rows[0]["alpha"] == 0.5
    assert rows[1]["accepted"] is False and "before" not in rows[0] and rows[0]["batches_run"] == 7


def test_the_table_pools_unseen_trials_of_runs_two_and_three(tmp_path):
    import importlib.util
    import json

    path = _SCRIPT.parent / "finetune_table.py"
    spec = importlib.util.spec_from_file_location("finetune_table", path)
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)

    def runs(u2, u3):
        g = lambda top1, n: {"n": n, "top1": top1}  # noqa: E731
        return {
            "run-01": {"all": g(0.5, 2), "repeats": g(None, 0), "unseen": g(0.5, 2)},
            "run-02": {"all": g(0.5, 4), "repeats": g(0.5, 2), "unseen": g(u2, 2)},
            "run-03": {"all": g(0.5, 4), "repeats": g(0.5, 2), "unseen": g(u3, 2)},
        }

    data = {
        "without": {"runs": runs(0.5, 0.0), "top1": 0.4},
        "with": {"runs": runs(1.0, 0.5), "top1": 0.5, "models": {"run-01": "initial"}},
    }
    (tmp_path / "finetune_subj02.json").write_text(json.dumps(data))
    trials = [("run-01", 0, 1), ("run-02", 0, 1), ("run-02", 1, 2), ("run-03", 0, 3)]
    ranks = {"without": ["1", "1", "2", "1"], "with": ["1", "2", "1", "1"]}
    for name, rank in ranks.items():  # run-02's image 1 repeats: only images 2 and 3 pair
        (tmp_path / f"session-{name}").mkdir()
        lines = ["run\ttrial\timage_id\trank"]
        lines += [f"{r}\t{t}\t{i}\t{k}" for (r, t, i), k in zip(trials, rank, strict=True)]
        (tmp_path / f"session-{name}" / "retrievals.tsv").write_text("\n".join(lines) + "\n")
    line, figures = table.rows("test:x", tmp_path)
    assert figures["paired"] == (0, 1)  # image 2: missed without, hit with
    assert table.sign_test_p(0, 5) == 2 / 32 and table.sign_test_p(3, 3) == 1.0
    assert line[1:3] == ["50 → 100", "0 → 50"] and line[-2] == "40.0 → 50.0"
    assert figures["unseen_change"] == 50.0  # 1 of 4 -> 3 of 4 unseen trials
    assert abs(figures["session_change"] - 10.0) < 1e-9


def test_the_v2_choice_rule_needs_more_than_a_point_over_plain_then_fewer_lowered_then_simpler():
    bench = str(_SCRIPT.parent)
    sys.path.insert(0, bench)  # the script imports its sibling benchmarks
    try:
        spec = importlib.util.spec_from_file_location(
            "finetune_rehearsal_dev", _SCRIPT.parent / "finetune_rehearsal_dev.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(bench)
        for name in ("finetune_subj02", "finetune_dev_variants", "finetune_subj02_variants"):
            sys.modules.pop(name, None)

    def summary(**means):
        return {
            k.replace("_", " "): {"mean_change_later_new_top1": m, "steps_lowered": low}
            for k, (m, low) in means.items()
        }

    choose = module.choose
    assert choose(summary(plain=(4.0, 1), rehearsal=(5.0, 0))) == "plain"  # not > 1 point
    assert choose(summary(plain=(4.0, 1), rehearsal=(5.5, 0))) == "rehearsal"
    # within 1 point of the best: fewer steps lowered, then the simpler
    s = summary(plain=(1.0, 1), rehearsal=(6.0, 1), l2sp_10=(5.5, 0))
    assert choose(s) == "l2sp 10"
    s = summary(plain=(1.0, 1), rehearsal=(6.0, 0), l2sp_10=(5.5, 0))
    assert choose(s) == "l2sp 10"
    s = summary(plain=(1.0, 1), rehearsal=(6.6, 0), l2sp_10=(5.5, 0))
    assert choose(s) == "rehearsal"
