"""The floors of the house (docs/architecture.md), enforced: a package imports only floors below.

The contracts live in ``pyproject.toml`` under ``[tool.importlinter]``; this test runs them, so a
change that breaks a floor fails CI.  A second check keeps function-level imports honest: one
that imports a package of this project from a floor above its own is a cycle dodged, whatever
import-linter's graph says.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: lowest first; packages on one floor are independent of each other
FLOORS = (
    ("rt_base",),
    ("fmri_compute", "rt_wire"),
    ("mindeye_models",),
    ("replay_data",),
    ("realtime",),
    ("gui",),
    ("mindeye_rt",),
)
FLOOR_OF = {pkg: i for i, names in enumerate(FLOORS) for pkg in names}


def test_import_contracts_hold(capsys):
    cli = pytest.importorskip("importlinter.cli")
    code = cli.lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    out = capsys.readouterr().out
    assert code == 0, out


def _imports(path: Path):
    """(line, imported top-level package) for every import in a module, nested ones included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module.split(".")[0]


@pytest.mark.parametrize("package", sorted(FLOOR_OF))
def test_no_package_imports_a_floor_above_its_own(package):
    """Also catches what a lazy import would hide from a reader: every import, at any depth."""
    floor = FLOOR_OF[package]
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, top in _imports(path):
            if top in FLOOR_OF and top != package and FLOOR_OF[top] >= floor:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {top}")
    assert not bad, "\n".join(bad)


def test_the_floors_here_are_the_contracts_floors():
    """The table above and pyproject's layers list the same packages in the same order."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")["layers"]
    from_contract = [tuple(p.strip() for p in layer.split("|")) for layer in layers]
    assert [tuple(sorted(f)) for f in reversed(from_contract)] == [tuple(sorted(f)) for f in FLOORS]
    assert sorted(config["root_packages"]) == sorted(FLOOR_OF)
