"""Tiny synthetic inputs for the GUI's tests: a telemetry stream and a replay dataset.

Seeded and index-stamped (each volume's voxels hold its TR index plus noise), so a test can see
which volume a widget shows.  Also single messages of the kinds the reconstruction display
reads, and a settable clock.  Nothing here is used by the console at run time.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from rt_base.names import OPTIONAL_STAGES, STAGE_NAMES
from rt_wire.message import Message, decode, encode


def tiny_mask(shape: tuple[int, int, int] = (10, 12, 8)) -> np.ndarray:
    """(X, Y, Z) bool: a small box ROI away from the grid's centre."""
    mask = np.zeros(shape, bool)
    x, y, z = shape
    mask[x // 4 : x // 2 + 1, y // 4 : (3 * y) // 4, z // 4 : (3 * z) // 4] = True
    return mask


def write_tiny_dataset(
    path: str | Path,
    *,
    shape: tuple[int, int, int] = (10, 12, 8),
    n_volumes: int = 40,
    tr: float = 1.0,
    n_images: int = 8,
    trial_every: int = 4,
    n_runs: int = 1,
    seed: int = 0,
):
    """Write a replay dataset of a few kilobytes (no training data) and open it.

    Volume ``k`` is ``1000 + k`` everywhere (plus small noise), so a received volume tells its
    index.  Images are flat colours with the image id in the red channel.

    Returns
    -------
    dataset : :class:`~replay_data.dataset_reader.ReplayDataset`.
    """
    from replay_data.dataset_format import Event
    from replay_data.dataset_writer import DatasetWriter

    rng = np.random.default_rng(seed)
    images = np.zeros((n_images, 16, 16, 3), np.uint8)
    images[..., 0] = (np.arange(n_images) * 255 // max(1, n_images - 1))[:, None, None]
    images[..., 1] = 80
    images[..., 2] = 160
    writer = DatasetWriter(
        path, name="gui-tiny", subject="sim", tr=tr, voxel_size=2.0, shape=shape, simulated=True
    )
    writer.write_masks(tiny_mask(shape))
    writer.write_stimuli(images, ["test"] * n_images, [f"img{i}" for i in range(n_images)])
    for _ in range(n_runs):
        base = 1000.0 + np.arange(n_volumes, dtype=np.float32)
        data = base[None, None, None, :] + rng.normal(0, 0.05, (*shape, n_volumes)).astype(
            np.float32
        )
        events = [
            Event(
                onset=float(t * tr),
                duration=float(tr),
                image_id=int(i % n_images),
                repetition=1,
                split="test",
                trial=i,
            )
            for i, t in enumerate(range(1, n_volumes - 2, trial_every))
        ]
        writer.write_run(data, events)
    return writer.finalize()


def motion_series(n_volumes: int, spikes: tuple[int, ...] = (), seed: int = 2) -> np.ndarray:
    """(n_volumes, 6) seeded head motion: a slow drift (mm, degrees) with small jitter, and
    at each TR in ``spikes`` a step of about 1 mm and 1 degree that the head then keeps, so
    each spike TR's framewise displacement is well over 0.5 mm and its neighbours' under."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_volumes)[:, None]
    drift = np.array([0.004, -0.003, 0.006, 0.003, -0.002, 0.001]) * t
    params = drift + rng.normal(0, 0.01, (n_volumes, 6))
    for spike in spikes:
        params[spike:] += np.array([0.25, -0.15, 0.2, 0.2, 0.1, -0.15])
    return params


def motion_meta(params: np.ndarray, index: int, mode: str) -> dict:
    """The ``motion`` meta of TR ``index`` of ``params`` (:func:`motion_series`) in ``mode``."""
    from fmri_compute.rigid import framewise_displacement

    fd = framewise_displacement(params[: index + 1])[-1]
    return {"params": [float(v) for v in params[index]], "fd": float(fd), "mode": mode}


RECON_MODES = ("lowlevel", "full")
RECON_COMPUTE_S = {"lowlevel": 0.02, "full": 0.5}  # the synthetic stream's compute times


def recon_image(trial: int, size: int = 32) -> np.ndarray:
    """The synthetic reconstruction of trial ``trial``: (size, size, 3) uint8, the left half
    ``(20 * trial % 256, 200, 60)`` and the right half ``(250, 30, 20 * trial % 256)``, so a
    test can tell both the trial and the orientation from a rendering."""
    image = np.empty((size, size, 3), np.uint8)
    image[:, : size // 2] = (20 * trial % 256, 200, 60)
    image[:, size // 2 :] = (250, 30, 20 * trial % 256)
    return image


def blurry_image(trial: int, size: int = 8) -> np.ndarray:
    """The synthetic blurry image of trial ``trial``: flat ``(90, 90, 100 + trial % 150)``."""
    image = np.empty((size, size, 3), np.uint8)
    image[:] = (90, 90, 100 + trial % 150)
    return image


def synthetic_stream(
    *,
    shape: tuple[int, int, int] = (10, 12, 8),
    n_volumes: int = 30,
    tr: float = 1.0,
    trial_every: int = 5,
    decode_delay: int = 4,
    k: int = 3,
    ways: int = 6,
    run: str = "run-01",
    dataset_path: str | None = None,
    correct: tuple[bool, ...] = (True, False),
    seq0: int = 0,
    t0: float | None = None,
    recon: str | None = None,
    motion: str | None = None,
    motion_spikes: tuple[int, ...] = (),
) -> list[Message]:
    """The telemetry a console sees for one run: run_start, volumes, tr, trials, responses,
    retrievals (top-k with the true image at rank 1 or 2 in turn, per ``correct``), status
    and log messages, run_end, end.

    A trial starts every ``trial_every`` TRs from TR 1 and is decoded ``decode_delay`` TRs
    later (if that TR is in the run).  With ``recon`` (``"lowlevel"`` or ``"full"``) a
    reconstruct stage takes part: each retrieval is followed by its trial's ``recon`` (image
    :func:`recon_image`, and in ``"full"`` mode blurry :func:`blurry_image`; compute time
    :data:`RECON_COMPUTE_S`), and the stage publishes status like the others.  With
    ``motion`` (``"estimate"`` or ``"correct"``) each ``tr`` carries the head motion of
    :func:`motion_series` (steps at the TRs in ``motion_spikes``).

    Returns
    -------
    messages : list of :class:`~rt_wire.message.Message` in arrival order.
    """
    if recon is not None and recon not in RECON_MODES:
        raise ValueError(f"'recon' must be None or one of {RECON_MODES}, got {recon!r}")
    t0 = time.time() if t0 is None else t0
    # the stages that report: an optional one (reconstruct) only in a session that runs it
    stages = [name for name in STAGE_NAMES if recon is not None or name not in OPTIONAL_STAGES]
    seq = iter(range(seq0, seq0 + 10_000))
    rng = np.random.default_rng(1)
    mask = tiny_mask(shape)
    n_trials = len(range(1, n_volumes, trial_every))
    out = [_run_start(next(seq), run, tr, n_volumes, shape, n_trials, dataset_path, t0)]
    due: dict[int, tuple[int, int]] = {}  # decode TR -> (trial, image id)
    n_trial = reconstructed = 0
    moves = motion_series(n_volumes, motion_spikes) if motion is not None else None
    for index in range(n_volumes):
        now = t0 + index * tr
        if index % trial_every == 1:
            trial = n_trial
            n_trial += 1
            due[index + decode_delay] = (trial, trial % ways)
            out.append(_trial_event(next(seq), run, trial, trial % ways, index * tr, tr, now))
        vol = (1000.0 + index + rng.normal(0, 0.05, shape)).astype(np.float32)
        stamps = {"source.acquired": now, "source.done": now + 0.001}
        out.append(_volume(next(seq), run, index, vol, stamps))
        stamps.update({"preprocess.received": now + 0.002, "preprocess.done": now + 0.004})
        raw = vol[mask]
        tr_meta = {} if moves is None else {"motion": motion_meta(moves, index, motion)}
        out.append(
            Message("tr", seq=index, run=run, index=index, t=dict(stamps), meta=tr_meta,
                    buffers={"raw": raw, "z": np.zeros_like(raw)})
        )  # fmt: skip
        if index in due:
            trial, image_id = due.pop(index)
            hit = correct[trial % len(correct)]
            trial_meta = {"onset": (index - decode_delay) * tr, "duration": tr,
                          "image_id": image_id, "repetition": 1, "split": "test",
                          "decode_index": index, "truncated": False}  # fmt: skip
            out += _decoded(run, trial, trial_meta, hit, raw, stamps, now, k=k, ways=ways)
            if recon is not None:
                out.append(_recon(run, trial, trial_meta, hit, recon, stamps, now))
                reconstructed += 1
        if index % 2 == 0:
            out += _statuses(stages, recon, reconstructed)
    out.append(Message("log", meta={"stage": "decode", "level": "info", "text": "model loaded"}))
    out.append(Message("run_end", seq=next(seq), run=run, meta={"n_volumes": n_volumes}))
    out.append(Message("end", seq=next(seq), meta={"runs": [run]}))
    return out


def _run_start(
    seq: int, run: str, tr: float, n_volumes: int, shape: tuple[int, int, int], n_trials: int,
    dataset_path: str | None, t0: float,
) -> Message:  # fmt: skip
    """The source's ``run_start`` of a run of the simulated dataset ``gui-tiny``."""
    meta = {"tr": tr, "n_volumes": n_volumes, "shape": list(shape),
            "affine": np.eye(4).tolist(), "n_trials": n_trials, "dataset": "gui-tiny",
            "dataset_path": dataset_path, "simulated": True}  # fmt: skip
    return Message("run_start", seq=seq, run=run, meta=meta, t={"source.sent": t0})


def _trial_event(
    seq: int, run: str, trial: int, image_id: int, onset: float, tr: float, now: float
) -> Message:
    """The source's ``trial`` event: image ``image_id`` shown at ``onset`` for one TR."""
    meta = {"onset": onset, "duration": tr, "image_id": image_id, "repetition": 1,
            "split": "test"}  # fmt: skip
    return Message("trial", seq=seq, run=run, index=trial, meta=meta, t={"source.acquired": now})


def _volume(seq: int, run: str, index: int, vol: np.ndarray, stamps: dict) -> Message:
    """The source's ``volume`` of TR ``index``."""
    return Message("volume", seq=seq, run=run, index=index, t=dict(stamps), buffers={"volume": vol})


def _decoded(
    run: str, trial: int, meta: dict, hit: bool, raw: np.ndarray, stamps: dict, now: float,
    *, k: int, ways: int,
) -> list[Message]:  # fmt: skip
    """Estimate's ``response`` and decode's top-``k`` ``retrieval`` of ``trial`` (the true
    image first if ``hit``, else second); adds their stamps to ``stamps``."""
    image_id = meta["image_id"]
    others = [i for i in range(ways) if i != image_id]
    ids = [image_id, *others[: k - 1]] if hit else [others[0], image_id, *others[1 : k - 1]]
    stamps.update({"estimate.received": now + 0.005, "estimate.done": now + 0.02})
    response = Message("response", seq=trial, run=run, index=trial, meta=dict(meta),
                       t=dict(stamps), buffers={"response": raw.copy()})  # fmt: skip
    stamps.update({"decode.received": now + 0.021, "decode.done": now + 0.05})
    buffers = {
        "ids": np.array(ids, np.int64),
        "scores": np.linspace(0.9, 0.5, k).astype(np.float32),
        "embedding": np.zeros(4, np.float32),
    }
    retrieval = Message(
        "retrieval", seq=trial, run=run, index=trial, t=dict(stamps), buffers=buffers,
        meta={**meta, "rank": 1 if hit else 2, "in_bank": True, "ways": ways},
    )  # fmt: skip
    return [response, retrieval]


def _recon(
    run: str, trial: int, meta: dict, hit: bool, mode: str, stamps: dict, now: float
) -> Message:
    """The reconstruct stage's ``recon`` of ``trial`` in ``mode``."""
    compute = RECON_COMPUTE_S[mode]
    started = now + 0.06
    buffers = {"image": recon_image(trial)}
    if mode == "full":
        buffers["blurry"] = blurry_image(trial)
    meta = {**meta, "rank": 1 if hit else 2, "mode": mode, "compute_ms": 1e3 * compute,
            "backlog": 0, "generator": "tiny-random" if mode == "full" else None}  # fmt: skip
    t = {**stamps, "reconstruct.received": now + 0.051, "reconstruct.started": started,
         "reconstruct.done": started + compute}  # fmt: skip
    return Message("recon", seq=trial, run=run, index=trial, meta=meta, t=t, buffers=buffers)


def _statuses(stages: list[str], recon: str | None, reconstructed: int) -> list[Message]:
    """A healthy ``status`` of each stage (the reconstruct stage's with its progress)."""
    out = []
    for stage in stages:
        health = {"stage": stage, "final": False, "errors": 0}
        if stage == "reconstruct":
            health.update(
                mode=recon,
                backlog=0,
                behind_s=None,
                reconstructed=reconstructed,
                compute_ms=1e3 * RECON_COMPUTE_S[recon] if reconstructed else None,
            )
        out.append(Message("status", meta=health))
    return out


class FakeClock:
    """A clock for :class:`~gui.model.SessionModel` that moves only when a test sets ``now``."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def over_the_wire(msgs: list[Message]) -> list[Message]:
    """The messages as a receiver gets them: encoded, and decoded into read-only views."""
    return [decode([bytes(f) for f in encode(m)]) for m in msgs]


def recon_status(backlog: int = 0, behind_s: float | None = None, **meta) -> Message:
    """A reconstruct stage's ``status`` in ``"full"`` mode with ``backlog`` trials queued."""
    return Message(
        "status",
        meta={
            "stage": "reconstruct",
            "final": False,
            "errors": 0,
            "mode": "full",
            "backlog": backlog,
            "behind_s": behind_s,
            "reconstructed": 2,
            "compute_ms": 812.0,
            **meta,
        },
    )


def recon_message(trial: int, run: str = "run-01", **meta) -> Message:
    """A ``lowlevel`` ``recon`` message of ``trial`` with image :func:`recon_image`."""
    return Message(
        "recon",
        run=run,
        index=trial,
        meta={"mode": "lowlevel", "compute_ms": 12.5, "backlog": 0, **meta},
        buffers={"image": recon_image(trial)},
    )


def retrieval_message(trial: int, run: str = "run-01") -> Message:
    """A top-2 ``retrieval`` of ``trial``: image 1 at rank 1 of 6."""
    return Message(
        "retrieval",
        run=run,
        index=trial,
        meta={"image_id": 1, "rank": 1, "ways": 6},
        buffers={"ids": np.array([1, 2]), "scores": np.array([0.9, 0.1], np.float32)},
    )


def fed_model(**stream):
    """A :class:`~gui.model.SessionModel` (no dataset loading) fed
    ``synthetic_stream(**stream)``."""
    from gui.model import SessionModel

    model = SessionModel(dataset_loader=None)
    model.feed_many(synthetic_stream(**stream))
    return model


def recon_session(recon: str | None, **model_options):
    """A :class:`~gui.model.SessionModel` (no dataset loading, ``model_options``) fed a 30-TR
    run over the wire, reconstructing in mode ``recon`` (None: no reconstruct stage)."""
    from gui.model import SessionModel

    model = SessionModel(dataset_loader=None, **model_options)
    model.feed_many(over_the_wire(synthetic_stream(n_volumes=30, recon=recon)))
    return model


def pixel_at(pm, fx: float, fy: float = 0.5) -> tuple[int, int, int]:
    """The (r, g, b) of QPixmap ``pm`` at fractions ``fx``, ``fy`` of its width and height."""
    c = pm.toImage().pixelColor(int(fx * (pm.width() - 1)), int(fy * (pm.height() - 1)))
    return c.red(), c.green(), c.blue()
