"""``mindeye-rt prepare-nsd`` on a fake NSD tree, then the prepared subject streamed by name:
conversion, training, streaming and scoring end to end, and the command's option errors."""

from __future__ import annotations

import pytest

from realtime.cli import main
from tests.replay_data.fake_nsd import make_fake_nsd


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return make_fake_nsd(tmp_path_factory.mktemp("nsd") / "nsd")


def test_prepare_then_stream_the_real_subject_by_name(fake, tmp_path, data_home, base_port, capsys):
    from mindeye_models.model_cache import ensure_model
    from realtime.config import StreamConfig
    from realtime.pipeline import run_stream
    from replay_data.dataset_reader import ReplayDataset

    argv = ["prepare-nsd", "--nsd-root", str(fake.root), "--subject", "1", "--quiet"]
    assert main([*argv, "--image-size", "64"]) == 0
    assert "--replay subj01" in capsys.readouterr().out
    ds = ReplayDataset.open(data_home / "datasets" / "subj01")
    assert ds.meta.tr == pytest.approx(4 / 3) and not ds.meta.simulated
    model = ensure_model(
        ds, models_dir=tmp_path / "models", preset="tiny", epochs=3, progress=False
    )
    run = next(r for r in ds.runs if any(e.split == "test" for e in ds.events(r)))
    cfg = StreamConfig(
        replay="subj01",
        out=str(tmp_path / "session"),
        speed=0,
        headless=True,
        checkpoint=str(model),
        launcher="thread",
        base_port=base_port,
        quiet=True,
        recon="none",
        motion="none",
        runs=[run],
    )
    logs: list[str] = []
    s = run_stream(cfg, log=logs.append)
    assert any("RECORDED" in line and "NSD subj01" in line for line in logs), logs
    assert s["complete"] and s["simulated"] is False
    assert s["volumes_lost"] == 0 and s["volumes_received"] == ds.n_volumes(run)
    assert s["trials"] == len(ds.events(run))
    assert 0.0 <= s["retrieval_top1"] <= 1.0 and s["retrieval_ways"] >= 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--subject", "9"], "'subject' must be an integer <= 8"),
        (["--subject", "1", "--sessions", "2-x"], "'sessions' must be session numbers"),
        (["--subject", "1", "--sessions", "41"], "'sessions' must lie in 1-40"),
        (["--subject", "1", "--image-size", "500"], "'image_size' must be an integer <= 425"),
        (["--subject", "1", "--betas", "b9"], "'betas' must be one of"),
        (["--subject", "1", "--name", "../x"], "'name' must be a dataset name"),
    ],
)
def test_bad_options_name_the_option(fake, data_home, capsys, extra, message):
    assert main(["prepare-nsd", "--nsd-root", str(fake.root), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (data_home / "datasets").exists()


def test_missing_nsd_files_are_listed(tmp_path, data_home, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["prepare-nsd", "--nsd-root", str(tmp_path / "empty"), "--subject", "2"]) == 2
    err = capsys.readouterr().err
    assert "no NSD design files for subj02" in err
    assert (
        main(
            [
                "prepare-nsd",
                "--nsd-root",
                str(tmp_path / "empty"),
                "--subject",
                "2",
                "--sessions",
                "1",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    for name in (
        "nsd_expdesign.mat",
        "nsd_stimuli.hdf5",
        "nsdgeneral.nii.gz",
        "design_session01_run01.tsv",
        "betas_session01.nii.gz",
    ):
        assert name in err
