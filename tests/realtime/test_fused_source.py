"""``--fuse-source`` (the default with ``--fuse-stages``): the source in the fused stage's
process decodes a session exactly as a source of its own does, and its spec and options are
checked."""

from __future__ import annotations

import dataclasses
import json

import pytest

from realtime.config import StreamConfig
from realtime.pipeline import run_stream
from realtime.stages import build_stage, fuse_specs, stage_class
from realtime.stages.fused import FusedStage
from realtime.stages.fused_source import SourcedFusedStage
from rt_base.errors import ConfigError
from rt_base.names import FUSED_PARTS, FUSED_STAGE
from tests.realtime.test_e2e import _thread_config
from tests.realtime.test_fused_stage import _specs


def _session(dataset, model, out, base_port, **options):
    cfg = dataclasses.replace(
        _thread_config(dataset, model, out, base_port), out=str(out), **options
    )
    return run_stream(cfg, log=lambda *a: None)


def _record(out) -> dict:
    """retrievals.tsv less its latency column, and the masked volumes the recorder got."""
    record = {
        "retrievals": [r.split("\t")[:-1] for r in (out / "retrievals.tsv").read_text().split("\n")]
    }
    for path in sorted((out / "runs").glob("*_raw.f32")):
        record[path.name] = path.read_bytes()
    return record


def test_the_source_in_the_fused_stage_decodes_as_its_own_process(
    tiny_dataset, tiny_model, tmp_path, base_port, data_home
):
    alone = _session(tiny_dataset, tiny_model, tmp_path / "alone", base_port, fuse_source=False)
    inside = _session(tiny_dataset, tiny_model, tmp_path / "inside", base_port)  # the default
    assert inside["complete"] and inside["volumes_lost"] == 0 and inside["nothing_lost"]
    assert inside["volumes_received"] == alone["volumes_received"] > 0
    assert inside["trials"] == alone["trials"] > 0
    assert _record(tmp_path / "inside") == _record(tmp_path / "alone")
    # the source still stamps its span, and the parts theirs
    for stage in ("source", *FUSED_PARTS):
        assert inside["latency_ms"][stage]["n"] == alone["latency_ms"][stage]["n"] > 0
    spec = json.loads((tmp_path / "inside" / "stages" / f"{FUSED_STAGE}.json").read_text())
    assert sorted(spec["parts"]) == sorted(["source", *FUSED_PARTS])
    assert "in_addr" not in spec and spec["parts"]["source"]["dataset"] == str(tiny_dataset.root)


def test_fuse_specs_with_the_source_has_no_input_and_no_source_stage():
    specs = fuse_specs(_specs(), with_source=True)
    assert sorted(specs) == ["fused", "recorder"]
    fused = specs["fused"]
    assert "in_addr" not in fused and fused["out_addr"] == "tcp://127.0.0.1:4"
    assert fused["parts"]["source"] == {"speed": 0}  # its links dropped
    broken = _specs()
    del broken["source"]
    with pytest.raises(ConfigError, match=r"no spec for \['source'\]"):
        fuse_specs(broken, with_source=True)


def test_the_fused_class_follows_its_parts():
    parts = {n: {} for n in FUSED_PARTS}
    assert stage_class("fused", {"parts": parts}) is FusedStage
    assert stage_class("fused", {"parts": {**parts, "source": {}}}) is SourcedFusedStage
    assert stage_class("fused", {"parts": [1]}) is FusedStage  # refused by its own checks


def test_a_sourced_fused_spec_with_an_input_or_linked_parts_is_refused(tiny_dataset):
    parts = {n: {} for n in FUSED_PARTS}
    parts["source"] = {"dataset": str(tiny_dataset.root), "out_addr": "tcp://127.0.0.1:9"}
    with pytest.raises(ConfigError, match=r"part 'source' must not have links.*out_addr"):
        build_stage("fused", {"parts": parts})
    with pytest.raises(ConfigError, match="'parts' must give the specs of"):
        SourcedFusedStage.from_options({}, parts={"source": {}})
    source = build_stage("source", {"dataset": str(tiny_dataset.root)})
    with pytest.raises(ConfigError, match="has no input"):
        SourcedFusedStage(source, [], in_addr="tcp://127.0.0.1:9")
    with pytest.raises(ConfigError, match="first part must be a source"):
        SourcedFusedStage(object(), [])


def test_fuse_source_options_are_checked():
    with pytest.raises(ConfigError, match="'fuse_source' must be true or false, got 'yes'"):
        StreamConfig(fuse_source="yes")
    with pytest.raises(ConfigError, match="--fuse-source .* needs\n?.*--fuse-stages"):
        StreamConfig(fuse_source=True, fuse_stages=False)
    assert StreamConfig().source_in_fused is True
    assert StreamConfig(fuse_stages=False).source_in_fused is False
    assert StreamConfig(fuse_source=False).source_in_fused is False
