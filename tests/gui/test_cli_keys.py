"""The console's and viewer's key options: a remote session needs keys, named clearly."""

from __future__ import annotations

import pytest

from gui.cli import main


@pytest.mark.parametrize("command", ["console", "viewer"])
def test_remote_telemetry_without_keys_is_refused(command, capsys):
    assert main([command, "--connect", "tcp://10.20.30.40:5555"]) == 2
    err = capsys.readouterr().err
    assert "10.20.30.40:5555 leaves loopback" in err and "mindeye-rt keys DIR" in err


def test_console_keys_that_do_not_exist(tmp_path, capsys):
    argv = ["console", "--connect", "tcp://127.0.0.1:5555", "--keys", str(tmp_path / "none")]
    assert main(argv) == 2
    assert "does not exist" in capsys.readouterr().err


def test_launch_console_passes_the_key_options(monkeypatch):
    import subprocess

    from gui import cli

    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda cmd: started.append(cmd))
    cli.launch_console("tcp://127.0.0.1:5555", key_args=["--keys", "/k", "--key-name", "m"])
    assert started[0][-4:] == ["--keys", "/k", "--key-name", "m"]
