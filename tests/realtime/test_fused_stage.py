"""``--fuse-stages`` (the default): preprocess, estimate and decode in one process decode a
session exactly as the three split stages do, and the fused stage's spec is checked."""

from __future__ import annotations

import dataclasses
import json

import pytest

from realtime.config import StreamConfig
from realtime.pipeline import run_stream
from realtime.stages import build_stage, fuse_specs
from realtime.stages.input_checks import default_upstream
from rt_base.errors import ConfigError
from rt_base.names import FUSED_PARTS, FUSED_STAGE
from tests.realtime.test_e2e import _thread_config


def _session(dataset, model, out, base_port, **options):
    cfg = dataclasses.replace(
        _thread_config(dataset, model, out, base_port), out=str(out), **options
    )
    return run_stream(cfg, log=lambda *a: None)


def _retrievals(out) -> list[list[str]]:
    """retrievals.tsv less its latency column."""
    return [r.split("\t")[:-1] for r in (out / "retrievals.tsv").read_text().splitlines()]


def test_a_fused_session_decodes_as_the_split_one(
    tiny_dataset, tiny_model, tmp_path, base_port, data_home
):
    split = _session(tiny_dataset, tiny_model, tmp_path / "split", base_port, fuse_stages=False)
    fused = _session(tiny_dataset, tiny_model, tmp_path / "fused", base_port, fuse_source=False)
    assert not (tmp_path / "split" / "stages" / f"{FUSED_STAGE}.json").exists()
    assert fused["complete"] and fused["volumes_lost"] == 0
    assert fused["volumes_received"] == split["volumes_received"]
    assert fused["trials"] == split["trials"] > 0
    assert _retrievals(tmp_path / "fused") == _retrievals(tmp_path / "split")
    raws = sorted((tmp_path / "split" / "runs").glob("*_raw.f32"))
    assert raws
    for path in raws:  # the masked volumes the recorder got
        assert (tmp_path / "fused" / "runs" / path.name).read_bytes() == path.read_bytes()
    # each part still stamps its own spans: the summary measures them as when split
    for stage in FUSED_PARTS:
        assert fused["latency_ms"][stage]["n"] == split["latency_ms"][stage]["n"] > 0
    spec = json.loads((tmp_path / "fused" / "stages" / f"{FUSED_STAGE}.json").read_text())
    assert sorted(spec["parts"]) == sorted(FUSED_PARTS) and "in_addr" in spec


def _specs():
    return {
        "source": {"in_addr": None, "out_addr": "tcp://127.0.0.1:1", "speed": 0},
        "preprocess": {
            "in_addr": "tcp://127.0.0.1:1",
            "out_addr": "tcp://127.0.0.1:2",
            "mask": "m",
        },
        "estimate": {"in_addr": "tcp://127.0.0.1:2", "out_addr": "tcp://127.0.0.1:3", "tr": 1.6},
        "decode": {"in_addr": "tcp://127.0.0.1:3", "out_addr": "tcp://127.0.0.1:4", "top_k": 5},
        "recorder": {"in_addr": "tcp://127.0.0.1:4", "out_dir": "x"},
    }


def test_fuse_specs_joins_the_parts_between_the_first_input_and_the_last_output():
    specs = fuse_specs(_specs())
    assert sorted(specs) == ["fused", "recorder", "source"]
    fused = specs["fused"]
    assert fused["in_addr"] == "tcp://127.0.0.1:1" and fused["out_addr"] == "tcp://127.0.0.1:4"
    assert fused["parts"]["estimate"] == {"tr": 1.6}
    assert fused["parts"]["preprocess"] == {"mask": "m"}
    broken = _specs()
    del broken["estimate"]
    with pytest.raises(ConfigError, match=r"no spec for \['estimate'\]"):
        fuse_specs(broken)


def test_a_fused_spec_with_missing_or_linked_parts_is_refused():
    with pytest.raises(ConfigError, match="'parts' must give the specs of"):
        build_stage("fused", {"parts": {"preprocess": {}}})
    with pytest.raises(ConfigError, match="'parts' must give the specs of"):
        build_stage("fused", {"parts": [1, 2, 3]})
    parts = {n: {} for n in FUSED_PARTS}
    parts["preprocess"] = {"in_addr": "tcp://127.0.0.1:9", "mask": "m"}
    with pytest.raises(ConfigError, match=r"part 'preprocess' must not have links.*in_addr"):
        build_stage("fused", {"parts": parts})


def test_the_stages_after_decode_expect_the_fused_stage_too():
    assert default_upstream("reconstruct") == {"decode", FUSED_STAGE}
    assert default_upstream("recorder") == {"reconstruct", "decode", FUSED_STAGE}
    assert default_upstream("estimate") == {"preprocess"}


def test_fuse_stages_must_be_a_bool():
    with pytest.raises(ConfigError, match="'fuse_stages' must be true or false, got 'yes'"):
        StreamConfig(fuse_stages="yes")
