"""A scanner session's trials from markers, without LSL: the live run clock (triggers or the
volumes' file times), a program's run_start before or after the first volume, a late marker
sent late and never dropped, the previous run's run_stop overtaken by the next series."""

from __future__ import annotations

import pytest

from realtime.marker_clock import LiveRunClock
from realtime.stages.marker_events import MarkerEvents
from tests.realtime.test_marker_events import T0, FakeInlet, trial
from tests.realtime.test_stage_scanner_source import _Running, _volumes, _write


def test_the_live_clock_interpolates_triggers_and_measures_the_pace():
    clock = LiveRunClock(tr=2.0)
    clock.volume(0, T0 + 0.3)  # a file: 0.3 s after its acquisition
    clock.volume(1, T0 + 0.8)  # the scanner (a simulation) goes 4x: 0.5 s a volume
    assert clock.source == "volumes" and clock.zero == pytest.approx(T0 + 0.3)
    assert clock.onset(T0 + 0.55) == pytest.approx(1.0)  # half-way between the files
    assert clock.onset(T0 + 0.2) == 0.0  # before the first file by less than a TR: at 0
    assert clock.final(T0 + 0.8) and not clock.final(T0 + 0.81)
    clock.trigger(T0)  # triggers win: they pin the acquisitions themselves
    clock.trigger(T0 + 0.5)
    assert clock.source == "triggers" and clock.triggers == 2
    assert clock.onset(T0 + 0.25) == pytest.approx(1.0)
    assert clock.onset(T0 + 1.0) == pytest.approx(4.0)  # beyond: at the triggers' pace
    clock.close()
    assert clock.final(T0 + 100)
    one = LiveRunClock(tr=1.5)
    one.trigger(T0 + 3.0, volume=2)  # one anchor: a scanner's pace, one TR a volume
    assert one.zero == pytest.approx(T0) and one.onset(T0 + 4.0) == pytest.approx(4.0)
    with pytest.raises(RuntimeError):
        LiveRunClock(tr=1.0).onset(T0)


def test_a_trial_waits_for_the_anchor_after_it_and_a_late_one_is_counted():
    inlet, notes = FakeInlet(), []
    ev = MarkerEvents(inlet, clock=LiveRunClock, notice=lambda lv, text: notes.append(text))
    ev.begin_run("r", tr=1.0)
    ev.volume(0, T0)
    inlet.send(trial(3), T0 + 1.5)  # after the last file known: its onset is not final yet
    ev.poll()
    assert ev.trials_until(100) == []
    ev.volume(1, T0 + 1.0)
    ev.volume(2, T0 + 2.0)
    (event,) = ev.trials_until(2.0)
    assert event.onset == pytest.approx(1.5)
    ev.note_late(event, 0.5)
    inlet.send(trial(4), T0 + 7.0)  # past the run's last file: timed when the run ends
    ev.poll()
    assert ev.trials_until(100) == []
    ev.finish_run()
    assert [e.onset for e in ev.trials_until(100)] == [pytest.approx(7.0)]
    info = ev.end_run(8)
    assert info["clock"] == "volumes" and info["late"] == 1 and info["trials"] == 2
    assert any("sent late" in n for n in notes)


def test_the_previous_runs_stop_after_the_next_series_began_is_ignored():
    inlet = FakeInlet()
    ev = MarkerEvents(inlet, clock=LiveRunClock)
    inlet.send('{"type": "run_start", "run": "a"}', T0)
    ev.poll()
    ev.begin_run("r1", tr=1.0)
    ev.end_run(3)  # the scanner's next series came first...
    ev.begin_run("r2", tr=1.0)
    inlet.send('{"type": "run_stop", "run": "a"}', T0 + 3.1)  # ...then the program's stop
    inlet.send('{"type": "run_start", "run": "b"}', T0 + 3.2)
    inlet.send("trigger", T0 + 4.0)
    inlet.send(trial(5), T0 + 5.0)
    ev.poll()
    assert ev.program_started and ev.covered() != float("inf")
    ev.volume(0, T0 + 4.3)
    assert ev.trials_until(100) == []  # the scanner has not passed the trial's time yet
    ev.volume(1, T0 + 5.3)  # one trigger: a TR a volume from it
    assert [(e.image_id, e.onset) for e in ev.trials_until(100)] == [(5, pytest.approx(1.0))]
    assert ev.counts["refused"] == 0


class _Inlet(FakeInlet):
    """A marker inlet for the source: opened and closed as a real one."""

    def __init__(self, name=None, *, wait_s=120.0):
        super().__init__()
        _Inlet.last = self

    def describe(self):
        return "fake markers"

    def open(self, stop=None):
        return self

    def close(self):
        pass


@pytest.mark.parametrize("run_start_first", [True, False])
def test_a_scanner_source_sends_the_markers_trials_and_a_late_one_late(
    run_start_first, tmp_path, monkeypatch
):
    import realtime.lsl_markers

    monkeypatch.setattr(realtime.lsl_markers, "MarkerInlet", _Inlet)
    folder, record = tmp_path / "export", tmp_path / "s"
    folder.mkdir()
    live = _Running(folder, run_name="live", run_volumes=6, markers="lsl", record_dir=str(record))
    live.wait_for(lambda m: hasattr(_Inlet, "last"))
    inlet = _Inlet.last
    if run_start_first:  # before the series: held for it
        inlet.send('{"type": "run_start"}', T0)
    for k in range(6):
        inlet.send("trigger", T0 + k)  # TR 1 s
    inlet.send(trial(11), T0 + 2.5)  # onset 2.5: before volume 3
    for index in (1, 2, 3):
        _write(folder, 7, index)
    live.wait_for(lambda m: _volumes(m) == [0, 1, 2])
    if not run_start_first:  # after the first volume
        inlet.send('{"type": "run_start"}', T0 + 3.2)
    inlet.send(trial(12), T0 + 0.5)  # its marker comes after volume 2 was sent: late
    live.wait_for(lambda m: any(x.kind == "trial" for x in m))  # at once, not at volume 3
    for index in (4, 5, 6):
        _write(folder, 7, index)
    msgs = live.wait_for(lambda m: any(x.kind == "run_end" for x in m))
    kinds = [(m.kind, m.index) for m in msgs if m.kind in ("trial", "volume")]
    assert kinds.index(("trial", 1)) == kinds.index(("volume", 2)) + 1  # the late one
    assert kinds.index(("volume", 3)) == kinds.index(("trial", 0)) + 1  # before volume 3
    on_time, late = sorted((m for m in msgs if m.kind == "trial"), key=lambda m: m.index)
    assert (on_time.meta["image_id"], on_time.meta["onset"]) == (11, pytest.approx(2.5))
    assert "late" not in on_time.meta
    assert (late.meta["image_id"], late.meta["onset"]) == (12, pytest.approx(0.5))
    assert late.meta["late"] is True and late.meta["late_s"] == pytest.approx(1.5)
    assert msgs[0].meta["trials_from"] == "markers"
    info = next(m.meta["markers"] for m in msgs if m.kind == "run_end")
    assert info["clock"] == "triggers" and info["program_run_start"] is True
    assert (info["trials"], info["late"], info["refused"]) == (2, 1, 0)
    assert (record / "markers.tsv").is_file()
    live.stop()


def test_a_replays_late_marker_is_flagged_and_says_which_volume_it_came_before():
    """The replay source driven by markers sends a trial whose onset an earlier volume reached
    (its marker came late) flagged late and told, as the scanner source does."""
    from realtime.stages.source_markers import MarkerReplayMixin

    class _Replay(MarkerReplayMixin):
        def flush_notices(self):
            pass

    inlet, notes = FakeInlet(), []
    src = _Replay()
    src.markers = MarkerEvents(inlet, speed=1.0, notice=lambda lv, text: notes.append(text))
    src.markers.begin_run("r", tr=1.0)
    inlet.send(trial(4, onset=1.5), T0)  # volumes 0-2 were sent: volume 2 reached its onset
    inlet.send(trial(5, onset=2.5), T0)  # on time for volume 3
    late, on_time = src._marker_trials("r", 3, 1.0, T0)
    assert late.meta["late"] is True and late.meta["late_s"] == pytest.approx(0.5)
    assert "late" not in on_time.meta
    assert late.meta["before_volume"] == on_time.meta["before_volume"] == 3
    inlet.send(trial(6, onset=7.5), T0)  # after the last volume (7), before the run's end
    (last,) = src._marker_trials("r", 8, 1.0, T0, end=True)
    assert last.meta["before_volume"] == 8 and "late" not in last.meta
    assert src.markers.end_run(8)["late"] == 1 and any("sent late" in n for n in notes)
