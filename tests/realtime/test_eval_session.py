"""``mindeye-rt eval``: the papers' table of a recorded tiny session, and its accuracy against
decode delay re-estimated by the session's own estimate stage."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from realtime.cli import main
from realtime.eval_delays import parse_delays, reestimate
from rt_base.errors import ConfigError
from tests.conftest import _next_block
from tests.eval_weights import TORCHVISION, write_random_weights


@pytest.fixture(scope="module")
def session(tiny_dataset, tiny_model, tiny_recon, tmp_path_factory):
    """A recorded tiny session with low-level reconstructions of every trial."""
    from realtime.config import StreamConfig
    from realtime.pipeline import run_stream

    root = tmp_path_factory.mktemp("eval-session")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINDEYE_RT_HOME", str(root / "home"))
        cfg = StreamConfig(
            replay=str(tiny_dataset.root),
            out=str(root / "s"),
            speed=0,
            headless=True,
            checkpoint=str(tiny_model),
            launcher="thread",
            base_port=_next_block(),
            quiet=True,
            recon="lowlevel",
            recon_models=str(tiny_recon),
        )
        summary = run_stream(cfg, log=lambda *a: None)
    assert summary["complete"] and summary["reconstructions"] == summary["trials"]
    return root / "s", summary


def _tsv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def test_eval_prints_the_papers_table_with_chance_levels(session, capsys):
    out, summary = session
    assert main(["eval", str(out), "--recon-size", "64"]) == 0
    printed = capsys.readouterr().out
    table = (out / "eval.md").read_text()
    assert table in printed and "SIMULATED subject" in table
    header = next(line for line in table.splitlines() if line.startswith("| Method"))
    for column in ("PixCorr", "SSIM", "Alex(2)", "Alex(5)", "Incep", "CLIP", "Eff", "SwAV"):
        assert column in header
    result = json.loads((out / "eval.json").read_text())
    single = result["retrieval"]["single_trial"]
    ways = summary["retrieval_ways"]
    assert single["ways"] == ways and single["chance"] == pytest.approx(1 / ways)
    chance_row = next(line for line in table.splitlines() if line.startswith("| chance"))
    assert chance_row.endswith(f"| {100 / ways:.1f}% | {100 / ways:.1f}% |")
    for kind in ("single_trial", "repetition_averaged"):
        r = result["retrieval"][kind]["brain_to_image"]
        assert r["mean"] > 3 / ways and r["ci_low"] <= r["mean"] <= r["ci_high"]
    # the real-time top-1 over the same trials is the single-trial N-way figure's expectation
    assert single["brain_to_image"]["mean"] == pytest.approx(summary["retrieval_top1"], abs=0.15)
    for kind in ("recon", "averaged_lowlevel"):
        recon = result["reconstruction"][kind]["metrics"]
        assert recon["PixCorr"]["value"] > recon["PixCorr"]["chance"] + 0.1, kind
        assert not recon["AlexNet(2)"]["computed"] and "n/c (not computed)" in table
    assert result["reconstruction"]["averaged_lowlevel"]["reconstructions"] == result["images"]
    averaged_row = next(line for line in table.splitlines() if line.startswith("| repetition"))
    assert "| n/c |" in averaged_row and "| – |" not in averaged_row  # PixCorr, SSIM computed


def test_averaged_reconstructions_are_drawn_as_the_stage_drew_each_trial(session):
    """The session's bundle draws a recorded trial's response into its recorded PNG again, so
    the repetition-averaged reconstructions come from the same models and code path."""
    from PIL import Image

    from realtime.eval_session import averaged_lowlevel

    out, _ = session
    config = json.loads((out / "config.json").read_text())
    rows = _tsv(out / "recons.tsv")[:3]
    responses = np.stack(
        [np.load(out / "trials" / f"{int(r['n']):04d}_response.npy") for r in rows]
    )
    drawn = averaged_lowlevel(config, responses, "cpu")
    for image, row in zip(drawn, rows, strict=True):
        recorded = np.asarray(Image.open(out / row["recon_file"]).convert("RGB"))
        assert np.abs(image.astype(int) - recorded).max() <= 1


@pytest.mark.slow
def test_eval_weights_compute_the_network_metrics(session, tmp_path):
    from realtime.eval_session import evaluate_session

    out, _ = session
    weights = write_random_weights(tmp_path, networks=TORCHVISION)  # CLIP left out
    result = evaluate_session(out, weights_dir=weights, recon_size=32, draws=3, log=lambda s: 0)
    metrics = result["reconstruction"]["recon"]["metrics"]
    for name in ("AlexNet(2)", "AlexNet(5)", "InceptionV3", "EffNet-B", "SwAV"):
        assert metrics[name]["computed"] and np.isfinite(metrics[name]["value"]), name
    assert not metrics["CLIP"]["computed"]
    assert "clip_vit_l14.safetensors" in metrics["CLIP"]["reason"]


def test_reestimation_at_the_session_delay_reproduces_the_recorded_responses(session):
    out, _ = session
    config = json.loads((out / "config.json").read_text())
    from replay_data.dataset_reader import ReplayDataset

    tr = ReplayDataset.open(config["dataset"]).meta.tr
    estimated = reestimate(out, config, config["config"]["decode_delay"], tr)
    rows = _tsv(out / "retrievals.tsv")
    assert len(estimated) == len(rows)
    for row in rows:
        recorded = np.load(out / "trials" / f"{int(row['n']):04d}_response.npy")
        np.testing.assert_allclose(estimated[(row["run"], row["trial"])][0], recorded, atol=1e-5)
    # a later delay sees more volumes: other responses
    later = reestimate(out, config, config["config"]["decode_delay"] + 4, tr)
    key = (rows[0]["run"], rows[0]["trial"])
    assert not np.allclose(later[key][0], estimated[key][0])


def test_accuracy_vs_delay_writes_the_table_and_the_plot(session, capsys):
    from PIL import Image

    out, summary = session
    assert main(["eval", str(out), "--recon-size", "32", "--delays", "4:8:4"]) == 0
    assert "offline (whole-run GLM) top-1" in capsys.readouterr().out
    rows = _tsv(out / "accuracy_vs_delay.tsv")
    assert [float(r["delay_s"]) for r in rows] == [4.0, 8.0]
    at_session_delay = rows[1]  # the session decoded at 8 s: the same top-1 again
    assert float(at_session_delay["top1"]) == pytest.approx(summary["retrieval_top1"], abs=1e-4)
    with Image.open(out / "accuracy_vs_delay.png") as png:
        assert png.format == "PNG" and png.size[0] >= 400


def test_parse_delays():
    assert parse_delays("4:20:2") == [4, 6, 8, 10, 12, 14, 16, 18, 20]
    assert parse_delays("4,8.5") == [4.0, 8.5]
    assert parse_delays("8:8:1") == [8.0]
    for bad, match in (
        ("20:4:2", "START <= STOP"),
        ("0:8:2", "'delays' must be a positive"),
        ("4:40:4", "<= 30"),
        ("a:b:c", "could not be read"),
        ("4:8:0", "'delays step'"),
    ):
        with pytest.raises(ConfigError, match=match):
            parse_delays(bad)


def test_a_folder_that_is_not_a_session_is_refused(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 2
    assert "not a session folder" in capsys.readouterr().err
    assert main(["eval", str(tmp_path), "--delays", "nope"]) == 2


def test_a_session_without_reconstructions_scores_retrieval_only(session, tmp_path):
    import shutil

    from realtime.eval_session import evaluate_session

    out, _ = session
    copy = tmp_path / "norecon"
    shutil.copytree(out, copy)
    (copy / "recons.tsv").unlink()
    result = evaluate_session(copy, draws=2, log=lambda s: 0)
    assert result["reconstruction"] is None
    assert "none recorded" in (copy / "eval.md").read_text()
    assert result["retrieval"]["single_trial"]["brain_to_image"]["mean"] > 0
