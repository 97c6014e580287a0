"""The marker schema: what a stimulus program sends over LSL, parsed into typed events.

Live sessions learn what was shown, and when, from the stimulus program (PsychoPy, usually),
which sends one string per LSL sample on a stream of type ``Markers``.  This module is the
schema of those strings, version :data:`MARKER_SCHEMA_VERSION`; it knows nothing of LSL or of
clocks (:mod:`realtime.lsl_markers` receives the samples, :mod:`realtime.marker_clock` times
them).  It sits beside the dataset's own trial events (:mod:`replay_data.dataset_format`) because
markers are the live sessions' source of the same events.

A sample is either a JSON object or, for the simplest programs, a plain integer image id::

    {"v": 1, "type": "trial", "image_id": 1234}         an image appeared (now)
    {"v": 1, "type": "trial", "image_id": 1234, "onset": 19.0, "duration": 3.0, "trial": 4}
    {"v": 1, "type": "run_start", "run": "run-01"}     the program started a run
    {"v": 1, "type": "run_stop"}                       the run is over: no more trials in it
    {"v": 1, "type": "trigger"}                        a scanner trigger pulse (a volume began)
    1234                                               same as the first line
    trigger                                            same as the trigger line

A bare ``5`` is image 5, not a trigger: a program that receives the scanner's triggers as
'5' key presses forwards them as ``trigger`` (or the JSON form).  ``v`` may be left out (it is
then 1); another version is refused, naming both.  Unknown keys are refused, so a misspelt
key is reported instead of ignored.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

from rt_base.errors import MessageError

__all__ = [
    "MARKER_SCHEMA_VERSION",
    "MARKER_TYPES",
    "Marker",
    "MarkerError",
    "RunStartMarker",
    "RunStopMarker",
    "TrialMarker",
    "TriggerMarker",
    "encode_marker",
    "parse_marker",
]

MARKER_SCHEMA_VERSION = 1
#: the plain string that stands for ``{"type": "trigger"}``
TRIGGER_WORD = "trigger"
_MAX_CHARS = 4096  # a marker is a short string; a long one is a mistake, not a marker


class MarkerError(MessageError):
    """A marker sample that does not follow the schema (logged and counted, never fatal)."""


@dataclass(frozen=True)
class TrialMarker:
    """An image shown: its id, and optionally what the program knows better than its timestamp.

    ``onset`` (seconds from the run's first volume) wins over the marker's LSL timestamp;
    ``duration`` defaults to the design's image duration; ``trial`` (0-based within the run),
    ``repetition`` (1 = first showing) and ``split`` are counted or looked up when left out.
    """

    image_id: int
    run: str | None = None
    trial: int | None = None
    onset: float | None = None
    duration: float | None = None
    repetition: int | None = None
    split: str | None = None
    type: str = "trial"


@dataclass(frozen=True)
class RunStartMarker:
    """The program started a run (live: at the run's first trigger); ``run`` names it."""

    run: str | None = None
    type: str = "run_start"


@dataclass(frozen=True)
class RunStopMarker:
    """The program finished a run: no further trial belongs to it."""

    run: str | None = None
    type: str = "run_stop"


@dataclass(frozen=True)
class TriggerMarker:
    """A scanner trigger: volume ``volume`` (0-based; None: the next one) began now."""

    volume: int | None = None
    type: str = "trigger"


Marker = TrialMarker | RunStartMarker | RunStopMarker | TriggerMarker
MARKER_TYPES: dict[str, type] = {
    cls.type: cls for cls in (TrialMarker, RunStartMarker, RunStopMarker, TriggerMarker)
}
_FIELD_RULES = {  # key -> (kind, minimum)
    "image_id": ("int", 0),
    "trial": ("int", 0),
    "volume": ("int", 0),
    "repetition": ("int", 1),
    "onset": ("float", 0.0),
    "duration": ("float", 0.0),
    "run": ("str", None),
    "split": ("str", None),
}


def parse_marker(sample: object) -> Marker:
    """The typed marker of one LSL sample value (a string, or a number from a numeric stream).

    Raises
    ------
    MarkerError
        The sample is not a marker of this schema; the message says what is wrong and how a
        correct marker looks.
    """
    if isinstance(sample, bool):
        raise MarkerError(f"a marker must be a JSON object or an image id, got {sample!r}")
    if isinstance(sample, (int, float)):
        return TrialMarker(image_id=_checked("image_id", sample))
    if isinstance(sample, bytes):
        sample = sample.decode("utf-8", errors="replace")
    if not isinstance(sample, str):
        raise MarkerError(f"a marker must be a string, got {type(sample).__name__}")
    text = sample.strip()
    if len(text) > _MAX_CHARS:
        raise MarkerError(f"a marker is at most {_MAX_CHARS} characters, got {len(text)}")
    if text.lower() == TRIGGER_WORD:
        return TriggerMarker()
    if text.lstrip("+").isdigit():
        return TrialMarker(image_id=int(text))
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        raise MarkerError(
            f"a marker must be a JSON object, an integer image id or 'trigger', got {text[:80]!r}"
            ' (e.g. {"v": 1, "type": "trial", "image_id": 12})'
        ) from None
    if not isinstance(obj, dict):
        if isinstance(obj, (int, float)) and not isinstance(obj, bool):
            return TrialMarker(image_id=_checked("image_id", obj))
        raise MarkerError(f"a marker must be a JSON object, got {text[:80]!r}")
    return _from_object(obj)


def _from_object(obj: dict) -> Marker:
    version = obj.get("v", MARKER_SCHEMA_VERSION)
    if version != MARKER_SCHEMA_VERSION or isinstance(version, bool):
        raise MarkerError(
            f"marker schema version {version!r} is not supported: this build reads version "
            f'{MARKER_SCHEMA_VERSION} (send "v": {MARKER_SCHEMA_VERSION})'
        )
    kind = obj.get("type")
    if kind not in MARKER_TYPES:
        raise MarkerError(f"a marker's 'type' must be one of {list(MARKER_TYPES)}, got {kind!r}")
    cls = MARKER_TYPES[kind]
    allowed = set(cls.__dataclass_fields__) - {"type"}
    unknown = sorted(set(obj) - allowed - {"v", "type"})
    if unknown:
        raise MarkerError(
            f"a {kind!r} marker takes only {sorted(allowed)}, got also {unknown} (misspelt?)"
        )
    if kind == "trial" and "image_id" not in obj:
        raise MarkerError("a 'trial' marker needs 'image_id': the id of the image shown")
    fields = {k: _checked(k, v) for k, v in obj.items() if k in allowed and v is not None}
    return cls(**fields)


def _checked(key: str, value: object):
    """``value`` of field ``key`` converted and checked against the field's rule."""
    kind, minimum = _FIELD_RULES[key]
    if kind == "str":
        if not isinstance(value, str) or not value.strip() or len(value) > 200:
            raise MarkerError(f"marker field {key!r} must be a non-empty string, got {value!r}")
        return value.strip()
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and kind == "int":
        ok = float(value).is_integer()
    if not ok or value < minimum:
        noun = "an integer" if kind == "int" else "a number"
        raise MarkerError(f"marker field {key!r} must be {noun} >= {minimum}, got {value!r}")
    return int(value) if kind == "int" else float(value)


def encode_marker(marker: Marker) -> str:
    """The JSON string of ``marker`` (fields left at None are left out), for an LSL sample."""
    fields = {k: v for k, v in asdict(marker).items() if v is not None and k != "type"}
    return json.dumps({"v": MARKER_SCHEMA_VERSION, "type": marker.type, **fields})
