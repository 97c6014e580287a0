"""Pipeline stages, and the registry that builds one by name from a JSON-able spec.

Each stage class builds itself (:meth:`~realtime.stages.base.Stage.from_spec`); this module
only maps the names of :data:`rt_base.names.STAGE_NAMES` to the classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from realtime.stages.base import LINK_KEYS, Stage
from realtime.stages.decode import DecodeStage
from realtime.stages.estimate import EstimateStage
from realtime.stages.fused import FusedStage, fuse_specs
from realtime.stages.fused_source import SourcedFusedStage
from realtime.stages.preprocess import PreprocessStage
from realtime.stages.reconstruct import ReconstructStage
from realtime.stages.recorder import RecorderStage
from realtime.stages.scanner_source import ScannerSource
from realtime.stages.source import ReplaySource
from rt_base.errors import ConfigError
from rt_base.names import FUSED_STAGE, SOURCE_STAGE, STAGE_NAMES

#: the stage class of each name, in data-path order (the fused stage in place of its parts)
STAGES: dict[str, type[Stage]] = {
    cls.name: cls
    for cls in (
        ReplaySource,
        PreprocessStage,
        EstimateStage,
        DecodeStage,
        FusedStage,
        ReconstructStage,
        RecorderStage,
    )
}

__all__ = [
    "LINK_KEYS",
    "STAGES",
    "STAGE_NAMES",
    "Stage",
    "build_stage",
    "fuse_specs",
    "stage_class",
]


def stage_class(name: str, spec: Mapping[str, Any] | None = None) -> type[Stage]:
    """The class of stage ``name``; for ``source``, the scanner source when ``spec`` names a
    ``folder`` (the scanner's export folder), else the replay source; for ``fused``, the one
    with the source in it when ``spec``'s parts have a ``source``.

    Raises
    ------
    ConfigError
        ``name`` is not one of :data:`STAGES`.
    """
    if name not in STAGES:
        raise ConfigError(f"stage name must be one of {list(STAGES)}, got {name!r}")
    if name == "source" and spec is not None and "folder" in spec:
        return ScannerSource
    if name == FUSED_STAGE and isinstance((spec or {}).get("parts"), Mapping):
        if SOURCE_STAGE in spec["parts"]:
            return SourcedFusedStage
    return STAGES[name]


def build_stage(name: str, spec: Mapping[str, Any]) -> Stage:
    """Build stage ``name`` from ``spec`` (its addresses and options, all JSON values).

    Stages that load models (decode, reconstruct) load them here, before they start.
    """
    return stage_class(name, spec).from_spec(spec)
