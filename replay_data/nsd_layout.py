"""Where the files of a local Natural Scenes Dataset (NSD) copy are, and which are missing.

Paths follow the NSD data manual's distributed layout (the layout of the public bucket
``s3://natural-scenes-dataset``), relative to the copy's root::

    nsddata/experiments/nsd/nsd_expdesign.mat                       trial order, shared1000
    nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5                    imgBrick (73000,425,425,3)
    nsddata/ppdata/subjAA/func1pt8mm/roi/nsdgeneral.nii.gz          -1 outside brain, 0, 1
    nsddata/ppdata/subjAA/func1pt8mm/brainmask.nii.gz               optional (motion correction)
    nsddata_timeseries/ppdata/subjAA/func1pt8mm/timeseries/timeseries_sessionBB_runCC.nii.gz
    nsddata_timeseries/ppdata/subjAA/func1pt8mm/design/design_sessionBB_runCC.tsv
    nsddata_betas/ppdata/subjAA/func1pt8mm/BETAS/betas_sessionBB.nii.gz

A session has 12 runs, or 14 where resting-state runs were acquired (run01 and run14 are then
the rest runs).  :func:`check_nsd_files` lists every missing file at once, before any work.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from rt_base.checks import check_choice, check_number, check_path
from rt_base.errors import ConfigError, DatasetError

__all__ = [
    "BETAS_VERSIONS",
    "DEFAULT_BETAS",
    "NSD_SESSIONS",
    "NsdLayout",
    "check_nsd_files",
    "parse_sessions",
]

#: Core NSD scan sessions planned per subject (``masterordering`` covers 40 x 750 trials).
NSD_SESSIONS = 40
#: The single-trial beta versions NSD distributes; MindEye (1 and 2) used the third, b3.
BETAS_VERSIONS = ("betas_fithrf_GLMdenoise_RR", "betas_fithrf", "betas_assumehrf")
DEFAULT_BETAS = "betas_fithrf_GLMdenoise_RR"
_SPACE = "func1pt8mm"
_DESIGN_RE = re.compile(r"design_session(\d\d)_run(\d\d)\.tsv$")


@dataclass(frozen=True)
class NsdLayout:
    """The paths of one subject's files in a local NSD copy.

    Parameters
    ----------
    root : the folder holding ``nsddata``, ``nsddata_timeseries``, ``nsddata_betas`` and
        ``nsddata_stimuli``.
    subject : NSD subject number, 1 to 8.
    betas : the beta version folder (:data:`BETAS_VERSIONS`).
    """

    root: Path
    subject: int
    betas: str = DEFAULT_BETAS

    @classmethod
    def checked(
        cls, root: str | os.PathLike, subject: int, betas: str = DEFAULT_BETAS
    ) -> NsdLayout:
        """The layout, with ``root``, ``subject`` and ``betas`` validated (clear errors)."""
        path = check_path(
            root,
            "nsd_root",
            kind="dir",
            remedy="point --nsd-root to the folder that holds nsddata/, nsddata_timeseries/, "
            "nsddata_betas/ and nsddata_stimuli/",
        )
        subject = int(check_number(subject, "subject", minimum=1, maximum=8, integer=True))
        return cls(path, subject, check_choice(betas, "betas", BETAS_VERSIONS))

    @property
    def subj(self) -> str:
        return f"subj{self.subject:02d}"

    @property
    def expdesign(self) -> Path:
        return self.root / "nsddata" / "experiments" / "nsd" / "nsd_expdesign.mat"

    @property
    def stimuli(self) -> Path:
        return self.root / "nsddata_stimuli" / "stimuli" / "nsd" / "nsd_stimuli.hdf5"

    @property
    def func(self) -> Path:
        """``nsddata/ppdata/subjAA/func1pt8mm``: the subject's masks."""
        return self.root / "nsddata" / "ppdata" / self.subj / _SPACE

    @property
    def nsdgeneral(self) -> Path:
        return self.func / "roi" / "nsdgeneral.nii.gz"

    @property
    def brainmask(self) -> Path:
        return self.func / "brainmask.nii.gz"

    @property
    def _timeseries_dir(self) -> Path:
        return self.root / "nsddata_timeseries" / "ppdata" / self.subj / _SPACE

    @property
    def design_dir(self) -> Path:
        return self._timeseries_dir / "design"

    def timeseries(self, session: int, run: int) -> Path:
        name = f"timeseries_session{session:02d}_run{run:02d}.nii.gz"
        return self._timeseries_dir / "timeseries" / name

    def design(self, session: int, run: int) -> Path:
        return self.design_dir / f"design_session{session:02d}_run{run:02d}.tsv"

    def betas_file(self, session: int) -> Path:
        return (
            self.root
            / "nsddata_betas"
            / "ppdata"
            / self.subj
            / _SPACE
            / self.betas
            / f"betas_session{session:02d}.nii.gz"
        )

    def design_runs(self) -> dict[int, list[int]]:
        """The runs of each session that have a design file: ``{session: [run, ...]}``."""
        found: dict[int, list[int]] = {}
        if self.design_dir.is_dir():
            for p in self.design_dir.iterdir():
                m = _DESIGN_RE.fullmatch(p.name)
                if m:
                    found.setdefault(int(m.group(1)), []).append(int(m.group(2)))
        return {s: sorted(r) for s, r in sorted(found.items())}


def check_nsd_files(layout: NsdLayout, sessions: list[int] | None) -> dict[int, list[int]]:
    """Every file the conversion of ``sessions`` needs, or one error listing all missing ones.

    Parameters
    ----------
    layout : the NSD copy and subject.
    sessions : session numbers (1-40); None for every session that has design files.

    Returns
    -------
    runs : ``{session: [run, ...]}``, the runs with a design file, per session.

    Raises
    ------
    DatasetError
        Naming each missing file (and how to get it), all at once.
    """
    on_disk = layout.design_runs()
    if sessions is None:
        sessions = list(on_disk)
        if not sessions:
            raise DatasetError(
                f"no NSD design files for {layout.subj} in {str(layout.design_dir)!r} "
                "(design_sessionBB_runCC.tsv): is --nsd-root the NSD copy's root folder?"
            )
    missing = [p for p in (layout.expdesign, layout.stimuli, layout.nsdgeneral) if not p.is_file()]
    runs: dict[int, list[int]] = {}
    for s in sessions:
        runs[s] = on_disk.get(s, [])
        if not runs[s]:
            missing.append(layout.design(s, 1))
        missing += [
            layout.timeseries(s, r) for r in runs[s] if not layout.timeseries(s, r).is_file()
        ]
        if not layout.betas_file(s).is_file():
            missing.append(layout.betas_file(s))
    if missing:
        shown = "\n  ".join(str(p) for p in missing)
        raise DatasetError(
            f"the NSD copy in {str(layout.root)!r} lacks {len(missing)} file(s) that "
            f"preparing {layout.subj} sessions {_ranges(sessions)} needs:\n  {shown}\n"
            "download them from the NSD bucket (s3://natural-scenes-dataset, same paths; see "
            "the NSD data manual), or choose other --sessions"
        )
    return runs


def _ranges(values: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``'1-3, 7'``."""
    spans: list[list[int]] = []
    for v in sorted(set(values)):
        if spans and spans[-1][1] == v - 1:
            spans[-1][1] = v
        else:
            spans.append([v, v])
    return ", ".join(f"{a}-{b}" if b > a else str(a) for a, b in spans)


def parse_sessions(values: list[str] | None) -> list[int] | None:
    """Session numbers from ``--sessions`` words such as ``1 2 5-8`` (None: all on disk).

    Raises
    ------
    ConfigError
        A word that is not a number or a range ``A-B`` of numbers in 1-40.
    """
    if not values:
        return None
    out: set[int] = set()
    for word in values:
        for part in str(word).replace(",", " ").split():
            a, sep, b = part.partition("-")
            try:
                lo, hi = int(a), int(b) if sep else int(a)
            except ValueError:
                raise ConfigError(
                    f"'sessions' must be session numbers or ranges such as '1 2 5-8', got {part!r}"
                ) from None
            if not 1 <= lo <= hi <= NSD_SESSIONS:
                raise ConfigError(
                    f"'sessions' must lie in 1-{NSD_SESSIONS} (ranges low-high), got {part!r}"
                )
            out.update(range(lo, hi + 1))
    return sorted(out)
