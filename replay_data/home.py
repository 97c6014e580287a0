"""The data home: one folder that holds every large file mindeye-rt makes or uses.

Datasets, trained models and session recordings never go in git; they live under the data
home, which the tool creates itself::

    <data home>/
        datasets/NAME/      replay datasets (see :mod:`replay_data.dataset_format`)
        models/             checkpoints (trained demo models, converted MindEye weights)
        sessions/           session recordings
        cache/              anything that can be rebuilt (embedding banks, ...)

The location is ``$MINDEYE_RT_HOME``, else ``$XDG_DATA_HOME/mindeye-rt``, else
``~/.local/share/mindeye-rt``.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "MINDEYE_RT_HOME"
SUBDIRS = ("datasets", "models", "sessions", "cache")


def data_home(home: str | os.PathLike | None = None, *, create: bool = False) -> Path:
    """The data home folder.

    Parameters
    ----------
    home : an explicit folder that overrides the environment (e.g. a ``--home`` option).
    create : make the folder (and its standard sub-folders) if missing.

    Returns
    -------
    path : absolute path (``~`` expanded).
    """
    if home is not None and str(home) != "":
        path = Path(home)
    elif os.environ.get(ENV_VAR):
        path = Path(os.environ[ENV_VAR])
    elif os.environ.get("XDG_DATA_HOME"):
        path = Path(os.environ["XDG_DATA_HOME"]) / "mindeye-rt"
    else:
        path = Path("~/.local/share/mindeye-rt")
    path = path.expanduser().resolve()
    if create:
        for sub in SUBDIRS:
            (path / sub).mkdir(parents=True, exist_ok=True)
    return path


def _sub(name: str, home: str | os.PathLike | None, create: bool) -> Path:
    path = data_home(home) / name
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def datasets_dir(home: str | os.PathLike | None = None, *, create: bool = False) -> Path:
    """``<data home>/datasets``: one folder per replay dataset."""
    return _sub("datasets", home, create)


def models_dir(home: str | os.PathLike | None = None, *, create: bool = False) -> Path:
    """``<data home>/models``: model checkpoints."""
    return _sub("models", home, create)


def sessions_dir(home: str | os.PathLike | None = None, *, create: bool = False) -> Path:
    """``<data home>/sessions``: session recordings."""
    return _sub("sessions", home, create)


def cache_dir(home: str | os.PathLike | None = None, *, create: bool = False) -> Path:
    """``<data home>/cache``: files that can be rebuilt at any time."""
    return _sub("cache", home, create)


def dataset_dir(name: str, home: str | os.PathLike | None = None) -> Path:
    """``<data home>/datasets/NAME`` (not created)."""
    return datasets_dir(home) / name
