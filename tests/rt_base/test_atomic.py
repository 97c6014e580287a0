import json
import os

import pytest

from rt_base import atomic


def test_writes_replace_whole_files(tmp_path):
    path = tmp_path / "a.json"
    atomic.write_json(path, {"n": 1})
    atomic.write_json(path, {"n": 2})
    assert json.loads(path.read_text()) == {"n": 2}
    atomic.write_text(tmp_path / "t.txt", "hé")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "hé"
    atomic.write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin", "t.txt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "data.npy"
    path.write_bytes(b"old")

    def half_then_fail(tmp):
        tmp.write_bytes(b"new but incomplete")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic.write_with(path, half_then_fail)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.npy"]


def test_temp_path_keeps_the_suffix_and_is_per_process(tmp_path):
    tmp = atomic.temp_path(tmp_path / "vol.nii.gz")
    assert tmp.parent == tmp_path
    assert tmp.name.endswith("vol.nii.gz") and str(os.getpid()) in tmp.name
    assert tmp.name.startswith(".")


def test_read_json_lines_skips_a_line_cut_by_a_crash(tmp_path):
    path = tmp_path / "log.jsonl"
    assert atomic.read_json_lines(path) == []
    path.write_text('{"a": 1}\n{"b": 2}\n{"c": ')
    assert atomic.read_json_lines(path) == [{"a": 1}, {"b": 2}]
