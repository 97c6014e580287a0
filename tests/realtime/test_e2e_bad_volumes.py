"""End to end on the tiny simulated subject with injected bad volumes: every bad volume is
found (and none on the clean session), nothing is lost, and the trials the bad volumes did not
touch decode as in the clean session."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from realtime.pipeline import run_stream
from replay_data.simulation_faults import Fault, write_faulty_copy
from tests.realtime.test_e2e import _thread_config

FAULTS = [
    Fault("run-01", 40, "nan"),
    Fault("run-01", 50, "zero"),
    Fault("run-02", 35, "slice"),
    Fault("run-02", 47, "spike"),
]
REASON = {"nan": "nonfinite", "zero": "dropout", "slice": "dropped_slice", "spike": "spike"}


def _decoded(out: Path) -> dict[tuple[str, int], tuple[np.ndarray, list[str]]]:
    """(run, trial) -> (its response, its ranked image ids)."""
    with open(out / "retrievals.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return {
        (r["run"], int(r["trial"])): (
            np.load(out / "trials" / f"{int(r['n']):04d}_response.npy"),
            r["top_ids"].split(","),
        )
        for r in rows
    }


def _session(dataset, model, tmp_path, base_port, name):
    cfg = _thread_config(dataset, model, tmp_path / name, base_port)
    return run_stream(cfg, log=lambda *a: None), Path(cfg.out)


def test_injected_bad_volumes_are_censored_and_the_other_trials_unaffected(
    tiny_dataset, tiny_model, tmp_path, base_port, data_home
):
    faulty = write_faulty_copy(tiny_dataset, tmp_path / "datasets" / "tiny-faulty", FAULTS)
    clean_s, clean_out = _session(tiny_dataset, tiny_model, tmp_path, base_port, "clean")
    bad_s, bad_out = _session(faulty, tiny_model, tmp_path, base_port, "faulty")

    # no false positive on the clean session; every injected fault found, with its reason
    assert clean_s["quality"]["bad_volumes"] == 0
    q = bad_s["quality"]
    assert q["bad_volumes"] == len(FAULTS)
    for run in ("run-01", "run-02"):
        assert q["runs"][run]["indices"] == [f.index for f in FAULTS if f.run == run]
    assert q["by_reason"] == {REASON[f.kind]: 1 for f in FAULTS}
    # nothing lost: every volume kept its slot, every trial decoded
    assert bad_s["volumes_lost"] == 0 and bad_s["volumes_received"] == clean_s["volumes_received"]
    assert bad_s["trials"] == clean_s["trials"]
    assert (bad_out / "runs" / "run-01_bad.tsv").is_file()

    clean, bad = _decoded(clean_out), _decoded(bad_out)
    assert clean.keys() == bad.keys()
    first_fault = {
        run: min(f.index for f in FAULTS if f.run == run) for run in ("run-01", "run-02")
    }
    tr, delay = 1.6, clean_s["decode_delay_s"]
    before = after = same_top1 = 0
    for (run, trial), (response, ids) in bad.items():
        assert np.all(np.isfinite(response))
        event = tiny_dataset.events(run)[trial]
        decode = int(np.ceil((event.onset + delay) / tr - 1e-9))
        bad_in_response = [
            f.index for f in FAULTS if f.run == run and event.onset / tr <= f.index <= decode
        ]
        if decode < first_fault[run]:  # decoded before any bad volume: bit-identical
            np.testing.assert_array_equal(response, clean[(run, trial)][0])
            before += 1
        elif not bad_in_response:  # a bad volume only elsewhere in its window: nearly the same
            r = np.corrcoef(response, clean[(run, trial)][0])[0, 1]
            assert r > 0.95, (run, trial, r)
            after += 1
            same_top1 += ids[0] == clean[(run, trial)][1][0]
    assert before >= 10 and after >= 5
    assert same_top1 >= 0.8 * after, (same_top1, after)
    assert q["trials_degraded"] == len(bad) - before - after
