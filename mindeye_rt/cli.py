"""``mindeye-rt``: the streaming application's commands (:mod:`realtime.cli`) and the operator
console's and participant viewer's (:mod:`gui.cli`) under one program name."""

from __future__ import annotations

import sys

from gui.cli import COMMANDS as GUI_COMMANDS
from gui.cli import launch_console
from realtime.cli import COMMANDS as REALTIME_COMMANDS
from realtime.cli import run_commands

COMMANDS = {**REALTIME_COMMANDS, **GUI_COMMANDS}


def _wire_console(subparsers) -> None:
    """``stream`` without ``--headless`` opens the console through gui's launcher."""
    subparsers.choices["stream"].set_defaults(open_console=launch_console)


def main(argv: list[str] | None = None) -> int:
    return run_commands(COMMANDS, argv, configure=_wire_console)


if __name__ == "__main__":
    sys.exit(main())
