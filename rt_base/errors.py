"""The one exception hierarchy of mindeye-rt.

Every error the package raises on purpose derives from :class:`MindEyeRTError`, so a caller
(the CLI, a stage supervisor) can tell our diagnosed failures from bugs.  Messages say which
argument or input was wrong, the rule, the value, and what to do about it.
"""

from __future__ import annotations


class MindEyeRTError(Exception):
    """Base class of every error raised on purpose by mindeye-rt."""


class ConfigError(MindEyeRTError, ValueError):
    """A user-settable option or config file entry has a bad value."""


class DatasetError(MindEyeRTError):
    """A replay dataset is missing, incomplete or inconsistent."""


class MessageError(MindEyeRTError, ValueError):
    """This message is bad: it does not decode, or it does not fit the receiving stage's state
    (a trial before its run started, a volume of the wrong shape).

    A stage that raises it from its handler logs it, counts it as ``bad`` in its status and
    goes on with the next message; any other exception is a bug.
    """


class WireError(MessageError):
    """A frame on the wire failed validation (the frame is dropped, the stage goes on)."""


class SchemaVersionError(WireError):
    """A message carries a schema version this build does not speak."""


class WeightsError(MindEyeRTError):
    """Model weights are missing or do not fit the model they are loaded into."""


class StageError(MindEyeRTError):
    """A pipeline stage failed to start, crashed, or was used in the wrong state."""
