"""Find the replay dataset a user names (``mindeye-rt stream --replay NAME``).

Order of precedence:

1. a complete dataset in ``<data home>/datasets/NAME`` (a converted NSD subject, a simulation
   made with ``mindeye-rt simulate``) wins;
2. else, if NAME is a built-in simulation preset (``subj01``, ``tiny``, and their moving twins
   ``subj01-moving``, ``tiny-moving``), the simulated subject is generated there once (fixed
   seed, about a minute for ``subj01``) and the user is told, plainly, that the data are
   SIMULATED;
3. else :class:`~rt_base.errors.DatasetError` lists the datasets there are and how to make one.

Generation happens in a temporary sibling folder (named as :func:`rt_base.atomic.temp_path`
names files, with a leading dot so that it is never listed) that is renamed into place when
complete, so an interrupted or concurrent generation never leaves a half-written dataset under
NAME.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from replay_data.dataset_reader import ReplayDataset
from replay_data.home import datasets_dir
from replay_data.simulate import simulate_subject
from replay_data.simulation_config import PRESETS, SIMULATOR_VERSION, SimulationConfig
from rt_base.atomic import temp_path
from rt_base.errors import ConfigError, DatasetError

__all__ = ["is_builtin_simulation", "list_datasets", "resolve_replay", "simulation_presets"]


def simulation_presets() -> list[str]:
    """Names that :func:`resolve_replay` can generate as simulated subjects."""
    return sorted(PRESETS)


def _is_complete(path: Path) -> bool:
    try:
        return json.loads((path / "dataset.json").read_text()).get("complete") is True
    except (OSError, ValueError):
        return False


def list_datasets(home: str | os.PathLike | None = None) -> list[str]:
    """Names of the complete datasets in ``<data home>/datasets``, sorted."""
    root = datasets_dir(home)
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and _is_complete(p)
    )


_BUILTIN_MARK = ".builtin-preset"


def is_builtin_simulation(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a simulated subject that :func:`resolve_replay` generated itself
    (regenerable from its preset, so a real dataset may replace it)."""
    return (Path(path) / _BUILTIN_MARK).is_file()


def _stale_builtin(path: Path, name: str) -> str | None:
    """Why an auto-generated built-in subject no longer matches this build's preset (or None).

    Only datasets that :func:`resolve_replay` generated itself (marked) are ever replaced; a
    dataset a user made or converted under the same name is left alone.
    """
    if name not in PRESETS or not (path / _BUILTIN_MARK).is_file():
        return None
    try:
        params = json.loads((path / "dataset.json").read_text()).get("params", {})
    except (OSError, ValueError):
        return "unreadable dataset.json"
    if params.get("simulator_version") != SIMULATOR_VERSION:
        return f"simulator version {params.get('simulator_version')} != {SIMULATOR_VERSION}"
    current = json.loads(json.dumps(asdict(PRESETS[name]())))
    # An option the dataset does not record is one its (older) simulator did not have: it made
    # the data the option's default makes (e.g. ``motion="none"``).
    default = json.loads(json.dumps(asdict(SimulationConfig())))
    changed = sorted(k for k, v in current.items() if v != params.get(k, default[k]))
    return f"changed parameters {changed}" if changed else None


def _is_path(name: str) -> bool:
    return any(c in name for c in "/\\") or name.startswith(("~", "."))


def _notice(ds: ReplayDataset, log: Callable[[str], object]) -> ReplayDataset:
    if ds.meta.simulated:
        log(
            f"replay dataset {ds.meta.name!r} is SIMULATED (made by mindeye-rt's simulator, "
            f"not recorded from a person): {ds.path}"
        )
    else:
        what = ds.meta.params.get("description") or f"subject {ds.meta.subject!r}"
        log(f"replay dataset {ds.meta.name!r} is RECORDED fMRI, not simulated ({what}): {ds.path}")
    return ds


def resolve_replay(
    name: str,
    *,
    home: str | os.PathLike | None = None,
    progress: bool = True,
    log: Callable[[str], object] = print,
) -> ReplayDataset:
    """The replay dataset called ``name``, generating the built-in simulated subject if need be.

    Parameters
    ----------
    name : dataset name, e.g. ``"subj01"``, or the path of a dataset folder (anything with a
        path separator or starting with ``.`` or ``~``).
    home : data home override (default :func:`replay_data.home.data_home`).
    progress : show progress bars while generating.
    log : where user-facing notices go (one string per call).

    Returns
    -------
    dataset : an opened, complete :class:`ReplayDataset`.

    Raises
    ------
    DatasetError
        No dataset ``name`` exists and ``name`` is not a simulation preset, or the existing
        folder is broken.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(
            f"'replay' must be a dataset name such as 'subj01' or a path, got {name!r}"
        )
    if _is_path(name):
        return _notice(ReplayDataset.open(Path(name).expanduser()), log)
    root = datasets_dir(home)
    path = root / name
    if (path / "dataset.json").is_file():
        stale = _stale_builtin(path, name)
        if (_is_complete(path) and not stale) or name not in PRESETS:
            return _notice(ReplayDataset.open(path), log)  # DatasetError names what is wrong
        if stale:
            log(
                f"the built-in simulated {name!r} in {path} was made by another simulator "
                f"version or preset ({stale}); generating it again"
            )
        else:
            log(
                f"replay dataset {name!r} in {path} is incomplete (interrupted); "
                "generating it again"
            )
    elif path.exists() and any(path.iterdir()):
        raise DatasetError(
            f"{str(path)!r} exists but holds no 'dataset.json': it is not a replay dataset; "
            "move it away or choose another name"
        )
    if name not in PRESETS:
        have = list_datasets(home)
        shown = ", ".join(have) if have else "none"
        raise DatasetError(
            f"no replay dataset {name!r} in {str(root)!r} (available: {shown}; built-in "
            f"simulations: {', '.join(simulation_presets())}): make one with "
            f"`mindeye-rt simulate --name {name}`, or prepare real data in {str(path)!r}"
        )
    return _generate_builtin(name, root, progress, log)


def _generate_builtin(
    name: str, root: Path, progress: bool, log: Callable[[str], object]
) -> ReplayDataset:
    """Generate the built-in simulated subject ``name`` into ``root / name`` and open it."""
    path = root / name
    config = PRESETS[name]()
    log(
        f"no real NSD {name} prepared in {root} (`mindeye-rt prepare-nsd` makes one); using "
        f"the built-in SIMULATED subject "
        f"'{name}' (seed {config.seed}, simulated fMRI, not a real person's data"
        f"{'; its head moves in the test runs' if config.motion != 'none' else ''}); "
        f"generating it once into {path} ..."
    )
    root.mkdir(parents=True, exist_ok=True)
    # A whole folder, so rt_base.atomic's file writers do not fit: generate, then rename.
    tmp = temp_path(root / f".{name}")
    try:
        simulate_subject(tmp, config, progress=progress, overwrite=True)
        (tmp / _BUILTIN_MARK).write_text(name)
        if path.exists() and (not _is_complete(path) or _stale_builtin(path, name)):
            shutil.rmtree(path)
        try:
            os.rename(tmp, path)
        except OSError:
            if not _is_complete(path):  # another process won the race with a complete dataset
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    ds = ReplayDataset.open(path)
    log(f"SIMULATED subject {name!r} ready: {path}")
    return ds
