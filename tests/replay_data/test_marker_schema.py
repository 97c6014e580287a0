"""The marker schema: every form a program may send, and what is refused (and why)."""

from __future__ import annotations

import json

import pytest

from replay_data.marker_schema import (
    MARKER_SCHEMA_VERSION,
    MarkerError,
    RunStartMarker,
    RunStopMarker,
    TrialMarker,
    TriggerMarker,
    encode_marker,
    parse_marker,
)


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        ("17", TrialMarker(image_id=17)),
        (17, TrialMarker(image_id=17)),
        (17.0, TrialMarker(image_id=17)),
        (" 5 ", TrialMarker(image_id=5)),  # a bare 5 is an image, not a trigger
        ("trigger", TriggerMarker()),
        ("TRIGGER", TriggerMarker()),
        ('{"type": "trigger", "volume": 3}', TriggerMarker(volume=3)),
        ('{"v": 1, "type": "run_start", "run": "run-02"}', RunStartMarker(run="run-02")),
        ('{"type": "run_stop"}', RunStopMarker()),
        ('{"type": "trial", "image_id": 9}', TrialMarker(image_id=9)),
        (
            '{"v": 1, "type": "trial", "image_id": 9, "onset": 3.5, "duration": 3, "trial": 2,'
            ' "repetition": 2, "split": "test", "run": "r1"}',
            TrialMarker(9, "r1", 2, 3.5, 3.0, 2, "test"),
        ),
    ],
)
def test_markers_parse(sample, expected):
    assert parse_marker(sample) == expected


@pytest.mark.parametrize(
    ("sample", "words"),
    [
        ("", "JSON object"),
        ("five", "JSON object, an integer image id or 'trigger'"),
        ("-3", "'image_id' must be an integer >= 0"),
        ("[1, 2]", "JSON object"),
        (True, "image id"),
        (None, "must be a string"),
        ('{"type": "trial"}', "needs 'image_id'"),
        ('{"type": "trial", "image_id": -1}', "'image_id' must be an integer >= 0"),
        ('{"type": "trial", "image_id": 1.5}', "'image_id' must be an integer"),
        ('{"type": "trial", "image_id": true}', "'image_id' must be an integer"),
        ('{"type": "trial", "image_id": 1, "onset": -2}', "'onset' must be a number >= 0"),
        ('{"type": "trial", "image_id": 1, "onset": "soon"}', "'onset' must be a number"),
        ('{"type": "trial", "imageid": 1}', "misspelt"),
        ('{"type": "trial", "image_id": 1, "run": ""}', "'run' must be a non-empty string"),
        ('{"type": "flash"}', "'type' must be one of"),
        ('{"v": 2, "type": "trigger"}', "version 2 is not supported: this build reads version 1"),
        ('{"type": "run_start", "volume": 1}', "takes only ['run']"),
        ("x" * 5000, "at most 4096"),
    ],
)
def test_bad_markers_say_what_is_wrong(sample, words):
    with pytest.raises(MarkerError, match=None) as err:
        parse_marker(sample)
    assert words in str(err.value)


def test_encode_round_trips_and_carries_the_version():
    for marker in (
        TrialMarker(image_id=4, run="run-01", trial=0, onset=3.0, duration=3.0),
        RunStartMarker(run="run-01"),
        RunStopMarker(),
        TriggerMarker(volume=0),
    ):
        text = encode_marker(marker)
        assert json.loads(text)["v"] == MARKER_SCHEMA_VERSION
        assert parse_marker(text) == marker
    assert "onset" not in json.loads(encode_marker(TrialMarker(image_id=1)))
