import json

from replay_data.resolve import resolve_replay


def test_stale_builtin_subject_is_regenerated_but_user_data_is_kept(tmp_path):
    logs: list[str] = []
    ds = resolve_replay("tiny", home=tmp_path, progress=False, log=logs.append)
    assert ds.meta.simulated and (ds.root / ".builtin-preset").is_file()
    assert any("SIMULATED" in line for line in logs)

    logs.clear()
    resolve_replay("tiny", home=tmp_path, progress=False, log=logs.append)
    assert not any("generating" in line for line in logs)  # cached, not remade

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
