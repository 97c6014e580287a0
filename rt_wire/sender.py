"""Who sent a message: a stage name and an id unique to one running instance of that stage.

Every header carries ``"sender": {"stage": "preprocess", "id": "4711-9f3c2a7e01b4"}``.  The id is
made when the stage is built (the process id and a random token), so an upstream that restarts,
or a second process that claims the same stage name, shows up as a different sender: the
receiver tracks sequence numbers per sender (:mod:`rt_wire.sequence`) and one sender can never
make it drop another's messages.  The id is an identity, not a credential: it names senders for
bookkeeping; authentication is the transport's (ZMQ CURVE).
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from typing import Any

from rt_base.errors import WireError
from rt_wire.header import short_repr

#: what a sender's stage name and id may look like (also keeps log lines and file names sane)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Sender:
    """A message's sender: ``stage`` (the stage's name) and ``id`` (one running instance)."""

    stage: str
    id: str

    def __post_init__(self) -> None:
        for field, value in (("stage", self.stage), ("id", self.id)):
            if not isinstance(value, str) or not _NAME.fullmatch(value):
                raise WireError(
                    f"sender {field} must be 1-64 letters, digits, '_', '.' or '-' (starting "
                    f"with a letter or digit), got {short_repr(value)}"
                )

    @classmethod
    def new(cls, stage: str) -> Sender:
        """A fresh identity for one instance of ``stage``: ``"<pid>-<12 random hex digits>"``."""
        return cls(stage, f"{os.getpid()}-{secrets.token_hex(6)}")

    def to_json(self) -> dict[str, str]:
        return {"stage": self.stage, "id": self.id}

    @classmethod
    def from_json(cls, value: Any) -> Sender:
        """The sender of a decoded header; :class:`WireError` if it is not one."""
        if not isinstance(value, dict) or set(value) != {"stage", "id"}:
            raise WireError(
                f"bad frame: 'sender' must be an object with exactly 'stage' and 'id', "
                f"got {short_repr(value)}"
            )
        try:
            return cls(value["stage"], value["id"])
        except WireError as err:
            raise WireError(f"bad frame: {err}") from None

    def __str__(self) -> str:
        return f"{self.stage}/{self.id}"


#: the sender written for a message that names none (built by hand outside a stage: tools, tests)
ANONYMOUS = Sender.new("anonymous")
