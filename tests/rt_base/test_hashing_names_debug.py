import numpy as np

from rt_base import debug, hashing, names


def test_file_and_array_hashes(tmp_path):
    a = tmp_path / "a"
    a.write_bytes(b"abc")
    assert hashing.file_sha256(a) == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # SHA-256("abc")
    )
    x = np.arange(6, dtype=np.float32)
    assert hashing.array_sha256(x) == hashing.array_sha256(x.copy())
    assert hashing.array_sha256(x) != hashing.array_sha256(x.reshape(2, 3))  # shape counts
    assert hashing.array_sha256(x) != hashing.array_sha256(x.astype(np.float64))  # dtype too


def test_cache_key_is_stable_and_sensitive():
    k = hashing.cache_key("demo", {"epochs": 30, "lr": 3e-4})
    assert k == hashing.cache_key("demo", {"lr": 3e-4, "epochs": 30})  # key order is irrelevant
    assert k != hashing.cache_key("demo", {"epochs": 31, "lr": 3e-4})
    assert len(k) == 16 and len(hashing.cache_key("x", length=8)) == 8


def test_names_are_consistent():
    assert names.STAGE_NAMES[0] == "source" and names.STAGE_NAMES[-1] == "recorder"
    assert names.OPTIONAL_STAGES <= set(names.STAGE_NAMES)
    assert names.stamp("decode", "done") == "decode.done"
    for table in (names.LIVE_SPANS, names.RECORDED_SPANS):
        for _kind, start, end in table.values():
            for key in (start, end):
                stage, event = key.split(".")
                assert stage in names.STAGE_NAMES and event in names.STAMP_EVENTS, key
    assert set(names.RECORDED_SPANS) == set(names.STAGE_NAMES)


def test_debug_switch(monkeypatch):
    monkeypatch.setenv(debug.ENV_VAR, "1")
    assert debug.reraise_background_errors()
    monkeypatch.setenv(debug.ENV_VAR, "0")
    assert not debug.reraise_background_errors()
