"""The data home: environment variables, defaults, and the folders it creates."""

from __future__ import annotations

from replay_data.home import data_home, dataset_dir


def test_data_home(monkeypatch, tmp_path):
    monkeypatch.setenv("MINDEYE_RT_HOME", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert data_home() == (tmp_path / "a").resolve()
    monkeypatch.delenv("MINDEYE_RT_HOME")
    assert data_home() == (tmp_path / "xdg" / "mindeye-rt").resolve()
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert data_home() == (tmp_path / "h" / ".local/share/mindeye-rt").resolve()
    assert data_home(tmp_path / "x", create=True) == (tmp_path / "x").resolve()
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == [
        "cache",
        "datasets",
        "models",
        "sessions",
    ]
    assert (
        dataset_dir("subj01", tmp_path / "x") == (tmp_path / "x" / "datasets" / "subj01").resolve()
    )
