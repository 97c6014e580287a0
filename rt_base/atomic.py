"""Whole-or-nothing file writes: a reader sees the old file or the new one, never half of one.

Each writer writes a temporary file next to the target and renames it over the target
(``os.replace`` is atomic on POSIX and Windows within one file system).  Append-only JSON-lines
logs, which cannot be replaced whole, are read back by :func:`read_json_lines`, which skips a
line cut by a crash.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def temp_path(path: str | Path) -> Path:
    """The temporary sibling ``path`` is written through: ``.partial-PID-NAME``.

    The whole name stays at the end, so writers choosing a format by suffix (nibabel with
    ``.nii.gz``, numpy, PIL) still do; the leading dot keeps it out of listings; the PID keeps
    two processes from sharing one temporary file.
    """
    path = Path(path)
    return path.with_name(f".partial-{os.getpid()}-{path.name}")


def write_with(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` then move ``tmp`` over ``path``; on failure remove ``tmp``."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""
    return write_with(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    return write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2) -> Path:
    """Atomically write ``obj`` as JSON (sorted keys off, trailing newline)."""
    return write_text(path, json.dumps(obj, indent=indent) + "\n")


def read_json_lines(path: str | Path) -> list[dict]:
    """The records of an append-only JSON-lines log, in order; [] when it does not exist.  A line
    that does not parse (cut by a crash of its writer) is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
