"""The scanner's options of ``stream`` and the ``scanner-sim`` command."""

from __future__ import annotations

import dataclasses
import time

import pytest

from realtime.cli import main
from realtime.config import StreamConfig
from realtime.preparation import motion_mode
from replay_data.scanner_files import read_volume
from rt_base.errors import ConfigError


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"run_volumes": 10}, "'run_volumes' applies to a scanner session"),
        ({"scanner_poll": True}, "'scanner_poll' applies to a scanner session"),
        ({"scanner": "d", "run_volumes": 0}, "'run_volumes' must be an integer >= 1"),
        ({"scanner": "d", "run": " "}, "'run' must be a run name"),
        ({"scanner": "d", "run": "run-01", "runs": ["run-02"]}, "either --run NAME"),
        ({"motion": "fix"}, "'motion' must be one of"),
        ({"motion_ref": True}, "'motion_ref'"),
        ({"fd_threshold": 0}, "'fd_threshold' must be a positive number of mm"),
        ({"scanner_idle": 0}, "'scanner_idle'"),
        ({"scanner": ""}, "'scanner' must be the scanner's export folder"),
    ],
)
def test_bad_scanner_and_motion_options_are_named(changes, match):
    with pytest.raises(ConfigError, match=match):
        StreamConfig(**changes)


def test_auto_motion_corrects_where_volumes_can_move(tiny_dataset):
    cfg = StreamConfig()
    assert motion_mode(cfg, tiny_dataset) == "none"  # a simulated head that holds still
    assert motion_mode(dataclasses.replace(cfg, scanner="x"), tiny_dataset) == "correct"
    assert motion_mode(dataclasses.replace(cfg, motion="estimate"), tiny_dataset) == "estimate"


def test_a_missing_export_folder_is_refused_before_anything_runs(tmp_path, capsys, data_home):
    code = main(["stream", "--scanner", str(tmp_path / "nope"), "--replay", "tiny", "--headless"])
    assert code == 2
    err = capsys.readouterr().err
    assert "'scanner' must be an existing folder" in err and "export" in err
    assert not (data_home / "datasets").exists()  # nothing generated or trained


def test_scanner_sim_writes_console_named_files(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "export"
    code = main(
        [
            "scanner-sim", "--replay", str(tiny_dataset.root), "--to", str(out), "--format",
            "enhanced", "--speed", "0", "--max-volumes", "3", "--first-series", "11",
        ]
    )  # fmt: skip
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    n_runs = len(tiny_dataset.runs)
    assert len(names) == 3 * n_runs and names[0] == "001_000011_000001.dcm"
    vol = read_volume(out / names[1])
    assert (vol.series, vol.index, vol.format) == (11, 2, "enhanced")
    assert "wrote" in capsys.readouterr().out
    assert main(["scanner-sim", "--replay", str(tiny_dataset.root), "--to", str(out),
                 "--runs", "run-99"]) == 2  # fmt: skip


def test_scanner_sim_logs_each_files_close_time(tiny_dataset, tmp_path):
    from realtime.scanner_sim import read_times

    out, log = tmp_path / "export", tmp_path / "times.tsv"
    before = time.time()
    assert main(["scanner-sim", "--replay", str(tiny_dataset.root), "--to", str(out),
                 "--speed", "0", "--max-volumes", "2", "--times", str(log)]) == 0  # fmt: skip
    times = read_times(log)
    n_runs = len(tiny_dataset.runs)
    assert sorted(times) == [f"001_{5 + r:06d}_{i:06d}.dcm" for r in range(n_runs) for i in (1, 2)]
    for name, closed in times.items():
        written = (out / name).stat().st_mtime
        assert before - 0.01 <= written <= closed + 0.01  # the last write, then the close
    assert sorted(p.name for p in out.iterdir()) == sorted(times)  # the log is elsewhere
    inside = out / "times.tsv"
    assert main(["scanner-sim", "--replay", str(tiny_dataset.root), "--to", str(out),
                 "--speed", "0", "--times", str(inside)]) == 2  # fmt: skip
    assert not inside.exists()
