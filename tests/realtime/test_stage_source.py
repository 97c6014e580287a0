"""The replay source without sockets: what :meth:`ReplaySource.produce` yields, in what order."""

from __future__ import annotations

import numpy as np
import pytest

from realtime.stages.source import ReplaySource
from rt_base.errors import ConfigError
from rt_wire.message import Message
from rt_wire.volume import volume_values

N = 8  # volumes per run


def _source(dataset, **options) -> ReplaySource:
    spec = {"dataset": str(dataset.root), "speed": 0, "max_volumes": N, **options}
    return ReplaySource.from_spec(spec)


def _by_run(msgs: list[Message]) -> dict[str, list[Message]]:
    runs: dict[str, list[Message]] = {}
    for msg in msgs[:-1]:
        runs.setdefault(msg.run, []).append(msg)
    return runs


def test_a_replay_yields_each_run_in_data_time(tiny_dataset):
    ds = tiny_dataset
    src = _source(ds)
    msgs = list(src.produce())
    assert msgs[-1].kind == "end" and msgs[-1].meta["runs"] == list(ds.runs)
    runs = _by_run(msgs)
    assert list(runs) == list(ds.runs)
    tr = float(ds.meta.tr)
    for run, seq in runs.items():
        start, *body, end = seq
        events = [e for e in ds.events(run) if e.onset < N * tr]
        assert start.kind == "run_start" and end.kind == "run_end"
        assert start.meta["tr"] == tr and start.meta["n_volumes"] == N
        assert start.meta["shape"] == list(ds.load_run(run).shape[:3])
        assert start.meta["n_trials"] == len(events) > 0
        volumes = [m for m in body if m.kind == "volume"]
        assert [m.index for m in volumes] == list(range(N))
        data = ds.load_run(run)
        for m in (volumes[0], volumes[-1]):  # each volume is the dataset's, under its index
            np.testing.assert_array_equal(
                volume_values(m.buffers["volume"], m.meta), data[..., m.index]
            )
            assert m.meta["time"] == pytest.approx(m.index * tr)
        trials = [m for m in body if m.kind == "trial"]
        assert [m.index for m in trials] == [int(e.trial) for e in events]
        assert [m.meta["image_id"] for m in trials] == [int(e.image_id) for e in events]
        times = [m.meta["onset"] if m.kind == "trial" else m.meta["time"] for m in body]
        assert times == sorted(times)  # trials and volumes merged in data time
        for i, m in enumerate(body):  # each trial says which volume came next
            if m.kind == "trial":
                after = [x.index for x in body[i:] if x.kind == "volume"]
                assert m.meta["before_volume"] == (after[0] if after else N)
    assert src.status()["volumes"] == N * len(ds.runs)


def test_dropped_volumes_are_never_sent(tiny_dataset):
    run = tiny_dataset.runs[0]
    src = _source(tiny_dataset, runs=[run], drop_volumes=[[run, 2], [run, 5]])
    msgs = list(src.produce())
    assert [m.index for m in msgs if m.kind == "volume"] == [0, 1, 3, 4, 6, 7]
    assert {m.run for m in msgs[:-1]} == {run}
    assert src.status()["volumes"] == 6


def test_an_operators_stop_ends_the_run_where_it_is(tiny_dataset):
    src = _source(tiny_dataset)
    msgs = []
    for msg in src.produce():
        msgs.append(msg)
        if msg.kind == "volume" and msg.index == 2:
            assert src.command({"cmd": "stop"})["ok"]
    assert [m.kind for m in msgs[-2:]] == ["run_end", "end"]
    assert msgs[-2].meta == {"n_volumes": N, "stopped": True, "n_volumes_sent": 3}
    assert msgs[-1].meta["stopped"] is True
    assert {m.run for m in msgs[:-1]} == {tiny_dataset.runs[0]}  # the next run never started


def test_a_run_not_in_the_dataset_is_a_config_error(tiny_dataset):
    with pytest.raises(ConfigError, match=r"'runs' must name runs of the dataset .*\['run-99'\]"):
        _source(tiny_dataset, runs=["run-99"])


def test_a_source_has_no_input(tiny_dataset):
    assert list(_source(tiny_dataset).handle(Message("trial", run="run-01", index=0))) == []


def test_a_records_trial_is_sent_before_the_volume_it_came_before(tiny_dataset, monkeypatch):
    """A session record's trial whose marker came late (``before_volume`` past its onset's
    volume) is replayed at the same place among the volumes, so a rerun fits the same GLM."""
    import dataclasses
    import math

    run = tiny_dataset.runs[0]
    tr = float(tiny_dataset.meta.tr)
    events = [e for e in tiny_dataset.events(run) if e.onset < N * tr]
    first = events[0]
    on_time = math.ceil(first.onset / tr)
    late = dataclasses.replace(first, before_volume=on_time + 2)
    src = _source(tiny_dataset, runs=[run])
    real_events = src.dataset.events
    monkeypatch.setattr(
        src.dataset, "events", lambda r: [late, *real_events(r)[1:]] if r == run else []
    )
    body = [m for m in src.produce() if m.kind in ("trial", "volume")]
    order = [(m.kind, m.index) for m in body]
    position = order.index(("trial", first.trial))
    assert order[position - 1] == ("volume", on_time + 1)
    assert order[position + 1][0] == "trial" or order[position + 1] == ("volume", on_time + 2)
    assert body[position].meta["onset"] == first.onset  # its onset is unchanged
    assert body[position].meta["before_volume"] == on_time + 2
