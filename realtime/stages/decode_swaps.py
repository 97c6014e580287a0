"""A rerun's side of fine-tuning between runs: the recorded swaps, replayed.

A fine-tune step's outcome depends on its time budget and on the machine, so a rerun does not
fine-tune again: it swaps in the weights the original session recorded
(``finetune/step-NN/model.safetensors``) at the same run starts, and decodes every run with the
model the original decoded it with.  :func:`recorded_swaps` reads them from a record;
:func:`replay_swaps_in` sets a rerun's stage specs (``mindeye-rt rerun``, :mod:`realtime.rerun`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rt_base.errors import ConfigError


def recorded_swaps(record_root: str | Path) -> dict[str, str]:
    """``{run: weights}`` of every swap a session recorded ({} without fine-tuning)."""
    from realtime.summary_finetune import read_steps

    swaps = {}
    for row in read_steps(record_root):
        if row.get("event") == "swap":
            swaps[str(row["run"])] = str(row["weights"])
    return swaps


def replay_swaps_in(record_root: str | Path, specs: dict[str, dict[str, Any]]) -> dict:
    """Make a rerun's decode stage replay the record's swaps, and its source not wait for steps
    (none run); returns the swaps."""
    swaps = recorded_swaps(record_root)
    specs["source"].pop("finetune_wait_s", None)
    specs["source"].pop("finetune_status_addr", None)
    if swaps:
        specs["decode"]["finetune"] = {"mode": "replay", "swaps": swaps}
    else:
        specs["decode"].pop("finetune", None)
    return swaps


class RecordedSwaps:
    """The decode stage's finetuner in a rerun: no step runs; at the ``run_start`` of a run the
    original swapped at, the recorded weights are loaded and handed over."""

    def __init__(self, swaps: dict[str, str], *, device: str = "cpu", report=None) -> None:
        missing = [w for w in swaps.values() if not Path(w).is_file()]
        if missing:
            raise ConfigError(
                f"the record's fine-tuned weights {missing[:3]} are gone: a rerun decodes each "
                "run with the model the original used, so it needs them"
            )
        self.swaps = dict(swaps)
        self.device = device
        self.report = report or (lambda level, text: None)
        self.settled: list[str] = []
        self.done = 0
        self.model_label = "initial"

    def observe(self, run, index, image_id, response) -> None:
        """Nothing to keep: no step runs."""

    def run_ended(self, run: str) -> None:
        self.settled.append(run)

    def poll(self) -> bool:
        return False

    def take_swap(self, run: str):
        if run not in self.swaps:
            return None
        from mindeye_models.checkpoint import load_checkpoint

        model, _ = load_checkpoint(self.swaps[run], device=self.device)
        self.done += 1
        self.model_label = Path(self.swaps[run]).parent.name
        self.report("info", f"rerun: decoding {run} with the recorded {self.model_label} weights")
        return model

    def close(self) -> None:
        """Nothing runs."""

    def status(self) -> dict:
        return {
            "finetune_state": "replay",
            "finetune_settled": list(self.settled),
            "finetune_swaps": self.done,
            "finetune_model": self.model_label,
        }
