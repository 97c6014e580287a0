"""Markers to trial events, without LSL: the one clock (triggers, volumes, own onsets), which
run a marker belongs to, and what is refused or malformed (counted, never fatal)."""

from __future__ import annotations

import json

import pytest

from realtime.lsl_markers import ReceivedMarker
from realtime.marker_clock import RunClock, clock_offset, session_time
from realtime.stages.marker_events import MarkerEvents
from replay_data.marker_schema import MarkerError, parse_marker

T0 = 1_000_000.0  # a session-clock time (seconds)


def received(raw: str, t: float) -> ReceivedMarker:
    try:
        marker, error = parse_marker(raw), ""
    except MarkerError as err:
        marker, error = None, str(err)
    return ReceivedMarker(raw, marker, t - 5.0, 0.25, t, t + 0.001, error)


class FakeInlet:
    """``pull()`` returns what the test queued (an inlet's interface, no LSL)."""

    info = {"name": "fake"}

    def __init__(self) -> None:
        self.queue: list[ReceivedMarker] = []

    def send(self, raw: str, t: float) -> None:
        self.queue.append(received(raw, t))

    def pull(self):
        out, self.queue = self.queue, []
        return out


def trial(image: int, **extra) -> str:
    return json.dumps({"v": 1, "type": "trial", "image_id": image, **extra})


def test_clock_session_time_and_offset():
    assert session_time(10.0, 0.5, 100.0) == 110.5
    offset = clock_offset(lambda: 5.0)
    import time

    assert abs(offset - (time.time() - 5.0)) < 0.1
    clock = RunClock(tr=2.0, speed=1.0)
    clock.volume(0, T0 + 1.0)  # no trigger: the first volume's time
    assert clock.source == "volumes" and clock.onset(T0 + 4.0) == pytest.approx(3.0)
    clock.trigger(T0 + 0.2)  # a trigger wins: volume 0 began at its time
    assert clock.source == "triggers" and clock.onset(T0 + 4.0) == pytest.approx(3.8)
    fast = RunClock(tr=2.0, speed=4.0)  # a replay at speed 4: 0.5 s per volume
    fast.trigger(T0 + 1.0, volume=2)
    assert fast.zero == pytest.approx(T0) and fast.onset(T0 + 1.0) == pytest.approx(4.0)


def test_trials_are_timed_by_triggers_when_there_are_some(tmp_path):
    inlet = FakeInlet()
    ev = MarkerEvents(inlet, speed=1.0, record_dir=tmp_path)
    ev.begin_run("run-01", tr=1.5)
    inlet.send('{"type": "run_start", "run": "run-01"}', T0)
    inlet.send("trigger", T0 + 0.1)  # volume 0 began
    inlet.send("12", T0 + 3.1)  # plain image id: onset 3.0 s
    inlet.send("trigger", T0 + 1.6)
    ev.poll()
    ev.volume(0, T0 + 2.0)  # the file came later: the trigger's time is used
    assert ev.trials_until(2.9) == []
    (event,) = ev.trials_until(3.0)
    assert (event.image_id, event.trial, event.repetition) == (12, 0, 1)
    assert event.onset == pytest.approx(3.0) and event.duration == 3.0
    info = ev.end_run(10)
    assert info["clock"] == "triggers" and info["triggers"] == 2 and info["trials"] == 1
    rows = (tmp_path / "markers.tsv").read_text().splitlines()
    assert rows[0].split("\t")[-1] == "marker" and len(rows) == 5
    saved = json.loads((tmp_path / "markers.json").read_text())
    assert saved["runs"]["run-01"]["clock"] == "triggers"


def test_without_triggers_the_first_volume_times_the_trials():
    inlet = FakeInlet()
    ev = MarkerEvents(inlet, speed=2.0)  # a replay at speed 2: data time runs twice as fast
    ev.begin_run("r", tr=2.0)
    inlet.send(trial(7), T0 + 2.0)  # before the first volume: held until the clock is known
    ev.poll()
    assert ev.trials_until(100.0) == []
    ev.volume(0, T0 + 0.5)
    (event,) = ev.trials_until(100.0)
    assert event.onset == pytest.approx(3.0)
    assert ev.end_run(5)["clock"] == "volumes"


def test_own_onsets_win_and_speed_zero_needs_them():
    inlet = FakeInlet()
    ev = MarkerEvents(inlet, speed=0.0)
    ev.begin_run("r", tr=2.0)
    inlet.send(trial(1, onset=4.0, trial=3), T0)
    inlet.send(trial(2), T0 + 1)  # no onset at speed 0: refused
    inlet.send(trial(3, onset=2.0, trial=3), T0 + 2)  # trial 3 again: refused
    ev.poll()
    assert ev.covered() == 4.0
    (event,) = ev.trials_until(10.0)
    assert (event.trial, event.onset) == (3, 4.0)
    inlet.send('{"type": "run_stop"}', T0 + 3)
    ev.poll()
    assert ev.covered() == float("inf")
    info = ev.end_run(5)
    assert info["clock"] == "onsets" and info["refused"] == 2 and info["trials"] == 1


def test_malformed_markers_are_counted_and_the_next_run_is_held():
    inlet, notes = FakeInlet(), []
    ev = MarkerEvents(inlet, notice=lambda level, text: notes.append((level, text)))
    inlet.send('{"type": "run_start"}', T0)  # before the source's run: held
    ev.poll()
    assert ev.waiting_run_start
    ev.begin_run("r1", tr=1.0)
    assert ev.program_started and not ev.waiting_run_start
    inlet.send("not a marker", T0 + 0.5)
    inlet.send('{"type": "trial", "image_id": 3, "colour": "red"}', T0 + 0.6)
    inlet.send(trial(4), T0 + 1.0)
    inlet.send('{"type": "run_start", "run": "second"}', T0 + 9)  # the program's next run
    inlet.send(trial(5), T0 + 10)
    ev.poll()
    ev.volume(0, T0)
    assert [e.image_id for e in ev.trials_until(100)] == [4]
    assert ev.end_run(3)["malformed"] == 2
    assert ev.counts["malformed"] == 2 and sum(level == "warning" for level, _ in notes) == 2
    ev.begin_run("r2", tr=1.0)  # the held markers go to the next run
    ev.volume(0, T0 + 9)
    assert [(e.image_id, e.onset) for e in ev.trials_until(100)] == [(5, pytest.approx(1.0))]


def test_a_trial_before_the_first_volume_is_refused_and_splits_come_from_the_design(
    tiny_dataset,
):
    inlet = FakeInlet()
    ev = MarkerEvents(inlet, design=tiny_dataset)
    test_image = int(tiny_dataset.image_ids("test")[0])
    ev.begin_run("r", tr=1.0)
    inlet.send("trigger", T0)
    inlet.send(trial(test_image), T0 - 1.0)  # before volume 0
    inlet.send(trial(test_image), T0 + 1.0)
    inlet.send(trial(99999), T0 + 2.0)  # an image the design does not know
    ev.poll()
    events = ev.trials_until(100)
    assert [(e.split, e.repetition) for e in events] == [("test", 1), ("unknown", 1)]
    assert ev.end_run(5)["refused"] == 1


def test_a_run_stop_after_its_run_ended_does_not_stop_the_next_one():
    inlet = FakeInlet()
    ev = MarkerEvents(inlet)
    inlet.send('{"type": "run_start"}', T0)
    ev.poll()
    ev.begin_run("r1", tr=1.0)
    ev.end_run(3)  # the replay reached the run's end first...
    inlet.send('{"type": "run_stop"}', T0 + 3)  # ...then the program's run_stop came
    inlet.send('{"type": "run_start"}', T0 + 4)
    inlet.send(trial(6), T0 + 6)
    ev.poll()
    ev.begin_run("r2", tr=1.0)
    assert ev.program_started and ev.covered() != float("inf")
    ev.volume(0, T0 + 4)
    assert [(e.image_id, e.onset) for e in ev.trials_until(100)] == [(6, pytest.approx(2.0))]
    assert ev.counts["refused"] == 1
