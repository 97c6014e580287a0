"""Finding the replay dataset a user names, generating the built-in simulated subject."""

from __future__ import annotations

import json
import shutil

import pytest

from replay_data.dataset_reader import ReplayDataset
from replay_data.resolve import list_datasets, resolve_replay, simulation_presets
from rt_base.errors import ConfigError, DatasetError


def test_resolve(tiny, tmp_path):
    ds, _ = tiny
    logs: list[str] = []
    home = tmp_path / "home"
    with pytest.raises(DatasetError, match="mindeye-rt simulate --name nsd99"):
        resolve_replay("nsd99", home=home, log=logs.append)
    # A prepared dataset wins.
    shutil.copytree(ds.path, home / "datasets" / "mine")
    got = resolve_replay("mine", home=home, log=logs.append)
    assert got.path == home.resolve() / "datasets" / "mine"
    with pytest.raises(DatasetError, match="available: mine"):
        resolve_replay("nsd99", home=home, log=logs.append)
    # A preset name is generated once, saying plainly that it is simulated.
    logs.clear()
    got = resolve_replay("tiny", home=home, progress=False, log=logs.append)
    assert got.meta.simulated and "SIMULATED" in logs[0] and "no real NSD tiny" in logs[0]
    assert list_datasets(home) == ["mine", "tiny"]
    assert not [p for p in (home / "datasets").iterdir() if p.name.startswith(".")]
    logs.clear()
    again = resolve_replay("tiny", home=home, log=logs.append)
    assert again.path == got.path and "SIMULATED" in logs[0] and len(logs) == 1
    with pytest.raises(ConfigError, match="'replay'"):
        resolve_replay("", home=home)
    with pytest.raises(DatasetError, match="does not exist"):
        resolve_replay(str(tmp_path / "nowhere"), home=home)
    assert resolve_replay(str(ds.path), home=home, log=logs.append).root == ds.path
    # An interrupted generation is never used: it is regenerated.
    info = got.path / "dataset.json"
    info.write_text(info.read_text().replace('"complete": true', '"complete": false'))
    with pytest.raises(DatasetError, match="incomplete"):
        ReplayDataset.open(got.path)
    resolve_replay("tiny", home=home, progress=False, log=logs.append)
    assert ReplayDataset.open(got.path).meta.simulated


def test_moving_presets_are_built_in():
    assert {"subj01-moving", "tiny-moving"} <= set(simulation_presets())


def test_stale_builtin_subject_is_regenerated_but_user_data_is_kept(tmp_path):
    logs: list[str] = []
    ds = resolve_replay("tiny", home=tmp_path, progress=False, log=logs.append)
    assert ds.meta.simulated and (ds.root / ".builtin-preset").is_file()
    assert any("SIMULATED" in line for line in logs)

    logs.clear()
    resolve_replay("tiny", home=tmp_path, progress=False, log=logs.append)
    assert not any("generating" in line for line in logs)  # cached, not remade

    # Made before the motion options existed: the same data as motion="none", kept.
    meta_path = ds.root / "dataset.json"
    meta = json.loads(meta_path.read_text())
    meta["params"] = {k: v for k, v in meta["params"].items() if not k.startswith("motion")}
    meta_path.write_text(json.dumps(meta))
    resolve_replay("tiny", home=tmp_path, progress=False, log=logs.append)
    assert not any("generating" in line for line in logs)

    meta_path = ds.root / "dataset.json"
    meta = json.loads(meta_path.read_text())
    meta["params"]["simulator_version"] = -1
    meta_path.write_text(json.dumps(meta))
    logs.clear()
    again = resolve_replay("tiny", home=tmp_path, progress=False, log=logs.append)
    assert any("generating it again" in line for line in logs)
    assert (
        json.loads((again.root / "dataset.json").read_text())["params"]["simulator_version"] != -1
    )

    (again.root / ".builtin-preset").unlink()  # now it looks like a user's own dataset
    meta = json.loads(meta_path.read_text())
    meta["params"]["simulator_version"] = -1
    meta_path.write_text(json.dumps(meta))
    logs.clear()
    kept = resolve_replay("tiny", home=tmp_path, progress=False, log=logs.append)
    assert not any("generating" in line for line in logs)
    assert json.loads((kept.root / "dataset.json").read_text())["params"]["simulator_version"] == -1
