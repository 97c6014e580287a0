"""One contract for every source: the replay, and a scanner export folder in each file format.

Whatever the input, the pipeline must get the same volumes, in the same order, on the same grid,
with the same trials, and a volume that never came must show as an index gap.
"""

from __future__ import annotations

import numpy as np
import pytest

from realtime.scanner_sim import export_session
from realtime.stages.scanner_source import ScannerSource
from realtime.stages.source import ReplaySource
from rt_wire.volume import SCALE_KEY, volume_values

N = 6  # volumes per run
SOURCES = ("replay", "mosaic", "enhanced", "nifti")


def _produce(kind: str, dataset, folder, drop=()) -> list:
    if kind == "replay":
        spec = {"dataset": str(dataset.root), "speed": 0, "max_volumes": N}
        spec["drop_volumes"] = [list(d) for d in drop]
        return list(ReplaySource.from_spec(spec).produce())
    export_session(
        dataset, folder, fmt=kind, speed=0, max_volumes=N, skip_volumes=set(drop), log=lambda s: 0
    )
    spec = {
        "folder": str(folder),
        "dataset": str(dataset.root),
        "max_volumes": N,
        "gap_wait_s": 0.05,
        "settle_s": 0.0,
    }
    return list(ScannerSource.from_spec(spec).produce())


@pytest.fixture(scope="module")
def replayed(tiny_dataset):
    return _produce("replay", tiny_dataset, None)


@pytest.mark.parametrize("kind", SOURCES)
def test_every_source_gives_the_same_stream(kind, tiny_dataset, replayed, tmp_path):
    msgs = replayed if kind == "replay" else _produce(kind, tiny_dataset, tmp_path)
    assert msgs[-1].kind == "end"
    assert [(m.kind, m.run, m.index) for m in msgs] == [(m.kind, m.run, m.index) for m in replayed]
    for got, want in zip(msgs, replayed, strict=True):
        if got.kind == "volume":  # the stored integers and their scale, as the file has them
            np.testing.assert_array_equal(got.buffers["volume"], want.buffers["volume"])
            assert got.buffers["volume"].dtype == np.int16 == want.buffers["volume"].dtype
            assert got.meta[SCALE_KEY] == want.meta[SCALE_KEY]
            values = volume_values(got.buffers["volume"], got.meta)
            run = tiny_dataset.load_run(got.run)[..., got.index]  # the reader's float32
            assert values.dtype == np.float32 and np.array_equal(values, run)  # bit for bit
            assert got.meta["time"] == pytest.approx(want.meta["time"])
        elif got.kind == "run_start":
            np.testing.assert_allclose(got.meta["affine"], tiny_dataset.affine, atol=1e-4)
            for key in ("tr", "n_volumes", "shape", "n_trials"):
                assert got.meta[key] == want.meta[key], key
        elif got.kind == "trial":
            assert got.meta == want.meta
    if kind != "replay":
        starts = [m for m in msgs if m.kind == "run_start"]
        assert all(m.meta["input"] == "scanner" and m.meta["format"] == kind for m in starts)
        volumes = [m for m in msgs if m.kind == "volume"]
        assert all(m.meta["acquisition_time"] is not None for m in volumes)


@pytest.mark.parametrize("kind", ("replay", "mosaic"))
def test_a_volume_that_never_came_is_an_index_gap(kind, tiny_dataset, tmp_path):
    run = tiny_dataset.runs[0]
    msgs = _produce(kind, tiny_dataset, tmp_path, drop={(run, 2)})
    indices = [m.index for m in msgs if m.kind == "volume" and m.run == run]
    assert indices == [0, 1, 3, 4, 5]
    end = next(m for m in msgs if m.kind == "run_end" and m.run == run)
    assert end.meta["n_volumes"] == N  # preprocess counts the missing one as lost
