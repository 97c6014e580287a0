"""The papers' table in Markdown: rows of a lowlevel and of a full session, formats, notes."""

from __future__ import annotations

from mindeye_models.eval_recon import RECON_METRICS
from realtime.eval_table import markdown_table


def _retrieval(mean: float, ways: int = 50) -> dict:
    side = {"mean": mean, "ci_low": mean - 0.1, "ci_high": mean + 0.1, "interval": "binomial"}
    return {
        "ways": ways,
        "draws": 30,
        "trials": 150,
        "images": ways,
        "chance": 1 / ways,
        "brain_to_image": dict(side),
        "image_to_brain": dict(side),
        "repetitions_mean": 3.0,
    }


def _recon(value: float, computed=("PixCorr", "SSIM", "AlexNet(2)"), chance=0.5) -> dict:
    metrics = {
        name: {"computed": True, "value": value, "chance": chance, "chance_how": "x"}
        if name in computed
        else {"computed": False, "reason": f"{name} weights absent"}
        for name in RECON_METRICS
    }
    return {"reconstructions": 150, "images": 50, "size": 425, "metrics": metrics, "mode": ["m"]}


def _result(recon: dict | None) -> dict:
    return {
        "simulated": True,
        "dataset": "subj01",
        "trials": 150,
        "images": 50,
        "retrieval": {"single_trial": _retrieval(0.695), "repetition_averaged": _retrieval(0.7)},
        "reconstruction": recon,
    }


def _rows(table: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split("|") for line in table.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows}


def test_a_lowlevel_session_has_three_rows_in_the_papers_formats():
    table = markdown_table(_result({"recon": _recon(0.25), "averaged_lowlevel": _recon(0.31)}))
    rows = _rows(table)
    assert list(rows) == ["Method", "---", "single trials", "repetition-averaged", "chance"]
    assert rows["single trials"][:3] == [".250", ".250", "25.0%"]  # 2-way as a percentage
    assert rows["single trials"][3] == "n/c" and rows["single trials"][-2:] == ["69.5%", "69.5%"]
    assert rows["repetition-averaged"][:2] == [".310", ".310"]
    assert rows["repetition-averaged"][-2:] == ["70.0%", "70.0%"]
    assert rows["chance"][-2:] == ["2.0%", "2.0%"] and rows["chance"][0] == ".500"
    assert "SIMULATED subject subj01" in table
    assert "- n/c (not computed): CLIP weights absent." in table


def test_a_full_session_adds_the_blurry_rows_and_no_averaged_generated_images():
    recon = {
        "recon": _recon(0.2, chance=0.01),
        "blurry": _recon(0.4, chance=0.3),
        "averaged_lowlevel": _recon(0.45),
    }
    rows = _rows(markdown_table(_result(recon)))
    assert list(rows)[2:] == [
        "single trials",
        "single trials, blurry",
        "repetition-averaged",
        "repetition-averaged, blurry",
        "chance",
        "chance, blurry",
    ]
    assert rows["single trials, blurry"][0] == ".400" and rows["single trials, blurry"][-1] == "–"
    assert rows["repetition-averaged"][0] == "–" and rows["repetition-averaged"][-1] == "70.0%"
    assert rows["repetition-averaged, blurry"][0] == ".450"
    assert rows["chance"][0] == ".010" and rows["chance, blurry"][0] == ".300"


def test_without_reconstructions_the_recon_columns_are_dashes():
    table = markdown_table(_result(None))
    rows = _rows(table)
    assert rows["single trials"][:8] == ["–"] * 8 and rows["chance"][:8] == ["–"] * 8
    assert "none recorded" in table
