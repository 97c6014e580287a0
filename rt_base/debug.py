"""The one place that reads ``MINDEYE_RT_RAISE``.

In production a background thread (a stage's socket loop, the reconstruct worker, the
console's receiver) logs an unexpected exception and goes on.  The test suite sets
``MINDEYE_RT_RAISE=1`` so that the same exception fails the test instead of hiding in a log.
"""

from __future__ import annotations

import os

ENV_VAR = "MINDEYE_RT_RAISE"


def reraise_background_errors() -> bool:
    """True when background-thread errors should propagate (``MINDEYE_RT_RAISE=1``)."""
    return os.environ.get(ENV_VAR) == "1"
