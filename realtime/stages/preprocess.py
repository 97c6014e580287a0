"""Preprocess: mask each volume to the ROI and z-score it online (no look-ahead)."""

from __future__ import annotations

import numpy as np

from fmri_compute.normalize import RunningZScore
from realtime.stages.base import Stage
from rt_base.errors import ConfigError, MessageError
from rt_wire.message import Message


def load_mask(path: str) -> np.ndarray:
    """ROI mask file -> (X, Y, Z) bool array."""
    import nibabel as nib

    try:
        mask = np.asanyarray(nib.load(path).dataobj) > 0
    except FileNotFoundError:
        raise ConfigError(f"'mask' must be an existing NIfTI file, got {path!r}") from None
    if mask.ndim != 3 or not mask.any():
        raise ConfigError(f"'mask' must be a non-empty 3D mask, got shape {mask.shape} in {path!r}")
    return mask


class PreprocessStage(Stage):
    """Masks volumes, normalizes per voxel online, and checks that no volume went missing.

    Emits one ``tr`` message per volume with buffers ``raw`` (V,) (masked scanner values: the
    estimate stage standardizes them inside its GLM window; the recorder keeps them for the
    offline comparison) and ``z`` (V,) (running z-score, for displays).  A volume
    index that jumps is reported as a ``gap`` message with the lost indices; a repeated index is
    dropped and reported.  Head-motion correction slots in here (a later stage of the project).
    """

    name = "preprocess"
    publish_kinds = frozenset({"tr", "gap"})

    def __init__(self, mask: str | np.ndarray, **kwargs) -> None:
        super().__init__(**kwargs)
        self.mask = load_mask(mask) if isinstance(mask, str) else np.asarray(mask, bool)
        self.flat_index = np.flatnonzero(self.mask)
        self.n_voxels = int(self.flat_index.size)
        self.run: str | None = None
        self.zscore = None
        self.next_index = 0
        self.expected = 0
        self.run_received = 0
        self.volumes_lost = 0
        self.volumes_repeated = 0

    @classmethod
    def from_options(cls, links: dict, *, mask: str) -> PreprocessStage:
        """Build from a spec: ``mask`` is the path of the ROI mask (NIfTI)."""
        return cls(mask, **links)

    def status(self) -> dict:
        return {
            **self.counters,
            "run": self.run,
            "volumes_lost": self.volumes_lost,
            "volumes_repeated": self.volumes_repeated,
        }

    def handle(self, msg: Message):
        if msg.kind == "run_start":
            return self._run_start(msg)
        if msg.kind == "volume":
            return self._volume(msg)
        if msg.kind == "run_end":
            return self._run_end(msg)
        return [msg]

    def _run_start(self, msg: Message):
        shape = tuple(msg.meta.get("shape", ()))
        if shape != self.mask.shape:
            raise ConfigError(
                f"run {msg.run!r} has volumes of shape {shape} but the mask is {self.mask.shape}; "
                "give the mask of this dataset (--mask)"
            )
        self.run = msg.run
        self.zscore = RunningZScore(self.n_voxels)
        self.next_index = 0
        self.run_received = 0
        self.expected = int(msg.meta.get("n_volumes", 0))
        return [msg]

    def _volume(self, msg: Message):
        if msg.run != self.run or self.zscore is None:
            raise MessageError(
                f"volume {msg.index} of run {msg.run!r} arrived outside its run (the current run "
                f"is {self.run!r}): a volume must follow its run's 'run_start'"
            )
        vol = msg.buffers.get("volume")
        if vol is None or vol.shape != self.mask.shape:
            got = None if vol is None else vol.shape
            raise MessageError(
                f"volume {msg.index} of run {msg.run!r} must have a 'volume' buffer of the mask's "
                f"shape {self.mask.shape}, got {got}"
            )
        outs: list[Message] = []
        index = int(msg.index)
        if index < self.next_index:
            self.volumes_repeated += 1
            self.log.warning("volume %s/%d repeated: dropped", msg.run, index)
            return [msg.derive("gap", meta={"stage": self.name, "repeated_volumes": [index]})]
        if index > self.next_index:
            lost = list(range(self.next_index, index))
            self.volumes_lost += len(lost)
            self.log.error("run %s: volume(s) %s never arrived", msg.run, lost)
            outs.append(msg.derive("gap", meta={"stage": self.name, "lost_volumes": lost}))
        self.next_index = index + 1
        self.run_received += 1
        raw = vol.reshape(-1)[self.flat_index].astype(np.float32)
        z = self.zscore.update(raw).astype(np.float32)
        out = msg.derive("tr", meta=dict(msg.meta), buffers={"raw": raw, "z": z})
        outs.append(out)
        return outs

    def _run_end(self, msg: Message):
        outs: list[Message] = []
        # an operator's stop ends the run early: volumes never sent are not lost
        last = (
            int(msg.meta.get("n_volumes_sent", self.expected))
            if msg.meta.get("stopped")
            else self.expected
        )
        missing = list(range(self.next_index, last))
        if missing:
            self.volumes_lost += len(missing)
            self.log.error("run %s ended without volume(s) %s", msg.run, missing)
            outs.append(msg.derive("gap", meta={"stage": self.name, "lost_volumes": missing}))
        outs.append(msg)
        return outs
