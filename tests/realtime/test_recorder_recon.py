"""The recorder's handling of ``recon`` messages: PNGs, recons.tsv, timing, counts, bad images."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import zmq
from PIL import Image

from realtime.stages.recorder import RECON_COLUMNS, RecorderStage
from rt_base.errors import MessageError
from rt_wire import transport
from rt_wire.message import Message

T0 = 1_700_000_000.0


def _retrieval(run: str, index: int, image_id: int) -> Message:
    return Message(
        "retrieval",
        run=run,
        index=index,
        meta={"image_id": image_id, "split": "test", "repetition": 1, "rank": 2, "ways": 10},
        t={"source.acquired": T0 + index, "decode.done": T0 + index + 0.05},
        buffers={
            "ids": np.array([image_id + 1, image_id], np.int64),
            "scores": np.array([0.9, 0.8], np.float32),
            "embedding": np.ones(4, np.float32),
        },
    )


def _recon(run, index, image_id, image, blurry=None, *, mode="lowlevel", compute_ms=12.5):
    buffers = {"image": image}
    if blurry is not None:
        buffers["blurry"] = blurry
    t = {
        "source.acquired": T0 + index,
        "decode.done": T0 + index + 0.05,
        "reconstruct.received": T0 + index + 0.051,
        "reconstruct.started": T0 + index + 0.1,
        "reconstruct.done": T0 + index + 0.1125,
    }
    meta = {
        "image_id": image_id,
        "split": "test",
        "rank": 2,
        "ways": 10,
        "mode": mode,
        "compute_ms": compute_ms,
        "backlog": 1,
        "generator": None,
        "steps": None,
        "strength": None,
        "prior_steps": None,
        "seed": index,
    }
    return Message("recon", run=run, index=index, meta=meta, t=t, buffers=buffers)


def _image(seed: int, h: int = 16, w: int = 20) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png(path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.mode == "RGB"
        return np.asarray(img)


def _rows(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _send_all(addr: str, msgs: list[Message]) -> None:
    push = transport.data_sender(zmq.Context.instance(), addr)
    for seq, msg in enumerate([*msgs, Message("end")]):
        msg.seq = seq
        transport.send(push, msg)
    push.close()


def test_recons_are_written_through_the_stage(tmp_path, base_port, capsys):
    addr = f"tcp://127.0.0.1:{base_port}"
    images = {k: _image(k) for k in range(3)}
    blurry = _image(99, 8, 8)
    msgs = [_retrieval("run-01", k, 10 + k) for k in range(3)]
    # recons in another order than their retrievals: NNNN follows the retrievals (decode order)
    msgs += [_recon("run-01", 2, 12, images[2], compute_ms=30.25)]
    msgs += [_recon("run-01", 0, 10, images[0], blurry, mode="full")]
    msgs += [_recon("run-01", 1, 11, images[1])]
    stage = RecorderStage(tmp_path, in_addr=addr, print_trials=True)
    with stage:
        _send_all(addr, msgs)
        assert stage.join(10), "the recorder did not finish after 'end'"
        status = stage.status()
    trials = tmp_path / "trials"
    for k, img in images.items():
        np.testing.assert_array_equal(_png(trials / f"{k + 1:04d}_recon.png"), img)
    np.testing.assert_array_equal(_png(trials / "0001_blurry.png"), blurry)
    assert not (trials / "0002_blurry.png").exists() and not (trials / "0003_blurry.png").exists()
    assert not list(trials.glob("*.partial*")) and not list(trials.glob("*.tmp"))

    rows = _rows(tmp_path / "recons.tsv")
    assert list(rows[0]) == RECON_COLUMNS
    assert [r["n"] for r in rows] == ["3", "1", "2"]
    assert [r["image_id"] for r in rows] == ["12", "10", "11"]
    assert [r["mode"] for r in rows] == ["lowlevel", "full", "lowlevel"]
    assert [float(r["compute_ms"]) for r in rows] == [30.25, 12.5, 12.5]
    for r in rows:  # reconstruct.done - decode.done = 62.5 ms
        assert float(r["delay_ms"]) == pytest.approx(62.5, abs=0.01)
        assert r["backlog"] == "1" and r["run"] == "run-01"
    assert rows[0]["recon_file"] == "trials/0003_recon.png" and rows[0]["blurry_file"] == ""
    assert rows[1]["blurry_file"] == "trials/0001_blurry.png"

    timing = [json.loads(line) for line in (tmp_path / "timing.jsonl").read_text().splitlines()]
    recon_records = [r for r in timing if r["kind"] == "recon"]
    assert [r["index"] for r in recon_records] == [2, 0, 1]
    assert recon_records[0]["t"]["reconstruct.done"] == T0 + 2 + 0.1125
    assert "recorder.received" in recon_records[0]["t"]

    info = json.loads((tmp_path / "recorder.json").read_text())
    assert info["reconstructions"] == 3 and info["retrievals"] == 3
    assert info["counters"]["errors"] == 0 and info["counters"]["bad"] == 0
    assert stage.n_recons == 3 and status["reconstructions"] == 3

    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("recon")]
    assert len(lines) == 3
    assert lines[0].split()[:4] == ["recon", "3", "run-01", "#2"]
    assert "lowlevel" in lines[0] and "30.2 ms" in lines[0]
    assert "full" in lines[1]


def test_a_session_without_recons_has_no_recons_file(tmp_path):
    rec = RecorderStage(tmp_path, print_trials=False)
    rec.handle(_retrieval("run-01", 0, 3))
    rec.finish()
    assert not (tmp_path / "recons.tsv").exists()
    assert json.loads((tmp_path / "recorder.json").read_text())["reconstructions"] == 0
    assert rec.status()["reconstructions"] == 0


@pytest.mark.parametrize(
    ("name", "bad", "match"),
    [
        ("image", np.zeros((8, 8, 3), np.float32), "uint8"),
        ("image", np.zeros((8, 8), np.uint8), r"\(H, W, 3\)"),
        ("image", np.zeros((8, 8, 4), np.uint8), r"\(8, 8, 4\)"),
        ("image", np.zeros((0, 8, 3), np.uint8), "non-empty"),
        ("blurry", np.zeros((4, 4, 1), np.uint8), "'blurry'"),
    ],
)
def test_invalid_images_raise_and_write_nothing(tmp_path, name, bad, match):
    rec = RecorderStage(tmp_path, print_trials=False)
    rec.handle(_retrieval("run-02", 5, 1))
    good = _image(0)
    msg = _recon("run-02", 5, 1, bad if name == "image" else good, None, mode="full")
    if name == "blurry":
        msg.buffers["blurry"] = bad
    with pytest.raises(MessageError, match=match) as err:
        rec.handle(msg)
    assert "run-02 trial 5" in str(err.value)
    assert rec.n_recons == 0
    assert not list((tmp_path / "trials").glob("*.png"))
    assert not (tmp_path / "recons.tsv").exists()


def test_a_recon_without_image_is_a_clear_error(tmp_path):
    rec = RecorderStage(tmp_path, print_trials=False)
    msg = _recon("run-01", 0, 1, _image(0))
    del msg.buffers["image"]
    with pytest.raises(MessageError, match="no 'image' buffer"):
        rec.handle(msg)


def test_a_bad_recon_is_counted_and_the_recorder_goes_on(tmp_path, base_port):
    # a bad message is not a bug: it is logged and counted, even in tests
    addr = f"tcp://127.0.0.1:{base_port}"
    good = _image(1)
    msgs = [
        _retrieval("run-01", 0, 4),
        _retrieval("run-01", 1, 5),
        _recon("run-01", 0, 4, np.zeros((8, 8, 3), np.float64)),
        _recon("run-01", 1, 5, good),
    ]
    stage = RecorderStage(tmp_path, in_addr=addr, print_trials=False)
    with stage:
        _send_all(addr, msgs)
        assert stage.join(10), "the recorder did not finish after 'end'"
    assert stage.counters["bad"] == 1 and stage.counters["errors"] == 0 and stage.n_recons == 1
    np.testing.assert_array_equal(_png(tmp_path / "trials" / "0002_recon.png"), good)
    assert not (tmp_path / "trials" / "0001_recon.png").exists()
    assert [r["n"] for r in _rows(tmp_path / "recons.tsv")] == ["2"]
