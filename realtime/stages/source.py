"""The replay source: volumes and trial events of a replay dataset, paced at the TR."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from realtime.checks import check_number
from realtime.errors import ConfigError
from realtime.pacing import Pacer
from realtime.stages.base import Stage
from realtime.wire import Message


class ReplaySource(Stage):
    """Replays runs of a :class:`~replay_data.dataset.ReplayDataset`.

    Emits, per run: ``run_start``; then ``trial`` events and ``volume`` messages merged in data
    time (a trial when its onset is reached, volume ``k`` at ``k * tr``); then ``run_end``.  After
    the last run, ``end``.

    Parameters
    ----------
    dataset : path of the replay dataset.
    runs : run labels to replay (None: all).
    speed : 1 = real time, 0 = as fast as the pipeline takes it.
    max_volumes : stop each run after this many volumes (None: all); for tests and demos.
    drop_volumes : ``(run, index)`` pairs never sent: a fault injection for tests that check
        that a lost volume is reported downstream.
    """

    name = "source"
    publish_kinds = frozenset({"volume", "trial", "run_start", "run_end", "end"})

    def __init__(
        self,
        dataset: str,
        *,
        runs: list[str] | None = None,
        speed: float = 1.0,
        max_volumes: int | None = None,
        drop_volumes: list[tuple[str, int]] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        from replay_data.dataset import ReplayDataset

        self.dataset = ReplayDataset.open(dataset)
        self.speed = check_number(speed, "speed", minimum=0.0)
        if max_volumes is not None:
            max_volumes = check_number(max_volumes, "max_volumes", minimum=1, integer=True)
        self.max_volumes = max_volumes
        known = list(self.dataset.runs)
        if runs:
            bad = [r for r in runs if r not in known]
            if bad:
                raise ConfigError(f"'runs' must name runs of the dataset {known}, got {bad}")
        self.runs = list(runs) if runs else known
        self.drop = {(r, int(i)) for r, i in (drop_volumes or [])}
        self.pacer = Pacer(self.speed, self._stop)
        self.sent_volumes = 0

    def status(self) -> dict:
        lateness = self.pacer.lateness[-50:]
        return {
            **self.counters,
            "volumes": self.sent_volumes,
            "pacing_lateness_ms": 1e3 * float(np.max(lateness)) if lateness else 0.0,
        }

    def handle(self, msg: Message):  # a source has no input
        return ()

    def produce(self) -> Iterator[Message]:
        tr = float(self.dataset.meta.tr)
        affine = np.asarray(self.dataset.affine, float).tolist()
        for run in self.runs:
            data = self.dataset.load_run(run)  # (X, Y, Z, T) float32, loaded before pacing
            n_vols = data.shape[-1] if self.max_volumes is None else min(
                data.shape[-1], self.max_volumes
            )
            events = [e for e in self.dataset.events(run) if e.onset < n_vols * tr]
            yield Message(
                "run_start",
                run=run,
                meta={
                    "tr": tr,
                    "n_volumes": n_vols,
                    "shape": list(data.shape[:3]),
                    "affine": affine,
                    "n_trials": len(events),
                    "dataset": self.dataset.meta.name,
                    "dataset_path": str(self.dataset.root),
                    "simulated": bool(self.dataset.meta.simulated),
                },
                t={"source.sent": time.time()},
            )
            self.pacer.restart()
            timeline = [(e.onset, 0, e) for e in events] + [(k * tr, 1, k) for k in range(n_vols)]
            timeline.sort(key=lambda item: (item[0], item[1]))
            for data_time, kind, item in timeline:
                if not self.pacer.wait_until(data_time):
                    return
                now = time.time()
                if kind == 0:
                    yield Message(
                        "trial",
                        run=run,
                        index=int(item.trial),
                        meta={
                            "onset": float(item.onset),
                            "duration": float(item.duration),
                            "image_id": int(item.image_id),
                            "repetition": int(item.repetition),
                            "split": str(item.split),
                        },
                        t={"source.acquired": now},
                    )
                    continue
                if (run, item) in self.drop:
                    continue
                vol = np.ascontiguousarray(data[..., item], dtype=np.float32)
                self.sent_volumes += 1
                yield Message(
                    "volume",
                    run=run,
                    index=int(item),
                    meta={"time": data_time},
                    t={"source.acquired": now},
                    buffers={"volume": vol},
                )
            del data
            yield Message("run_end", run=run, meta={"n_volumes": n_vols}, t={"source.sent": time.time()})
        yield Message("end", meta={"runs": self.runs}, t={"source.sent": time.time()})
