"""benchmarks/bench_record.py at a tiny size: a run recorded and compressed, its three lines.

Loaded by file name (benchmarks/ is scripts, not a package).  No timing is asserted."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_record.py"


def test_bench_record_reports_writes_and_compression(capsys):
    spec = importlib.util.spec_from_file_location("bench_record", _SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    data, tr = bench._synthetic((9, 10, 8), 4)
    assert data.shape == (9, 10, 8, 4) and data.dtype == np.float32
    bench.bench(data, tr)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("run of 4 volumes (9, 10, 8)")
    assert lines[1].startswith("write per volume: p50") and "(TR 1.6 s)" in lines[1]
    assert lines[2].startswith("compression at run end:") and "% of the .nii" in lines[2]
