"""The simulated subject's trial schedules: which image is shown when, in each run.

Timing follows NSD: one 3 s image + 1 s gap per trial slot, 188 volumes of
1.6 s per run, ~62 image trials per run with the remaining slots blank.
"""

from __future__ import annotations

import math

import numpy as np

from replay_data.dataset_format import Event
from replay_data.simulation_config import SimulationConfig, assign_test_images
from replay_data.stimuli import StimulusSet

__all__ = ["schedule_test_runs", "schedule_train_runs"]


def _place(
    config: SimulationConfig,
    images: list[int],
    splits: list[str],
    rng: np.random.Generator,
    seen: dict[int, int],
) -> list[Event]:
    """Order a run's trials, put them in random non-blank slots, count repetitions."""
    for _ in range(100):  # avoid the same image twice in a row
        order = rng.permutation(len(images))
        if all(images[a] != images[b] for a, b in zip(order[:-1], order[1:], strict=True)):
            break
    slots = np.sort(rng.choice(config.n_slots, len(images), replace=False))
    events = []
    for trial, (j, slot) in enumerate(zip(order, slots, strict=True)):
        seen[images[j]] = seen.get(images[j], 0) + 1
        onset = config.lead_in_s + float(slot) * config.trial_s
        events.append(
            Event(onset, config.image_s, int(images[j]), seen[images[j]], splits[j], trial)
        )
    return events


def schedule_test_runs(config: SimulationConfig, stim: StimulusSet, rng) -> list[list[Event]]:
    """The test session: every test image ``test_reps`` times, fillers complete the runs."""
    test_ids, fillers = stim.ids("test"), list(stim.ids("filler"))
    assign = assign_test_images(len(test_ids), config.test_reps, config.trials_per_run)
    seen: dict[int, int] = {}
    runs = []
    for members in assign:
        n_fill = config.trials_per_run - len(members)
        images = [int(test_ids[i]) for i in members] + fillers[:n_fill]
        fillers = fillers[n_fill:]
        splits = ["test"] * len(members) + ["filler"] * n_fill
        runs.append(_place(config, images, splits, rng, seen))
    return runs


def schedule_train_runs(config: SimulationConfig, stim: StimulusSet, rng) -> list[list[Event]]:
    """Training runs: each training image 1-3 times, ``n_train_trials`` trials in all."""
    ids = stim.ids("train")
    extra = rng.choice(2 * len(ids), config.n_train_trials - len(ids), replace=False) // 2
    trials = rng.permutation(np.concatenate([ids, ids[extra]]))
    n_runs = math.ceil(len(trials) / config.trials_per_run)
    seen: dict[int, int] = {}
    return [
        _place(config, [int(i) for i in part], ["train"] * len(part), rng, seen)
        for part in np.array_split(trials, n_runs)
    ]
