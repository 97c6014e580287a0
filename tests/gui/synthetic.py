"""Tiny synthetic inputs for the GUI's tests: a telemetry stream and a replay dataset.

Seeded and index-stamped (each volume's voxels hold its TR index plus noise), so a test can see
which volume a widget shows.  Nothing here is used by the console at run time.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from rt_wire.message import Message


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
) -> list[Message]:
    """The telemetry a console sees for one run: run_start, volumes, tr, trials, responses,
    retrievals (top-k with the true image at rank 1 or 2 in turn, per ``correct``), status
    and log messages, run_end, end.

    With ``recon`` (``"lowlevel"`` or ``"full"``) a reconstruct stage takes part: each
    retrieval is followed by its trial's ``recon`` (image :func:`recon_image`, and in ``"full"``
    mode blurry :func:`blurry_image`; compute time :data:`RECON_COMPUTE_S`), and the stage
    publishes status like the others.

    Returns
    -------
    messages : list of :class:`~rt_wire.message.Message` in arrival order.
    """
    if recon is not None and recon not in RECON_MODES:
        raise ValueError(f"'recon' must be None or one of {RECON_MODES}, got {recon!r}")
    t0 = time.time() if t0 is None else t0
    stages = ["source", "preprocess", "estimate", "decode", "recorder"]
    if recon is not None:
        stages.insert(4, "reconstruct")
    reconstructed = 0
    seq = iter(range(seq0, seq0 + 10_000))
    rng = np.random.default_rng(1)
    mask = tiny_mask(shape)
    out = [
        Message(
            "run_start",
            seq=next(seq),
            run=run,
            meta={
                "tr": tr,
                "n_volumes": n_volumes,
                "shape": list(shape),
                "affine": np.eye(4).tolist(),
                "n_trials": len(range(1, n_volumes, trial_every)),
                "dataset": "gui-tiny",
                "dataset_path": dataset_path,
                "simulated": True,
            },
            t={"source.sent": t0},
        )
    ]
    trials = {}
    n_trial = 0
    for index in range(n_volumes):
        now = t0 + index * tr
        if index % trial_every == 1:
            image_id = n_trial % ways
            trials[index + decode_delay] = (n_trial, image_id)
            out.append(
                Message(
                    "trial",
                    seq=next(seq),
                    run=run,
                    index=n_trial,
                    meta={
                        "onset": index * tr,
                        "duration": tr,
                        "image_id": image_id,
                        "repetition": 1,
                        "split": "test",
                    },
                    t={"source.acquired": now},
                )
            )
            n_trial += 1
        vol = (1000.0 + index + rng.normal(0, 0.05, shape)).astype(np.float32)
        stamps = {"source.acquired": now, "source.done": now + 0.001}
        out.append(
            Message(
                "volume",
                seq=next(seq),
                run=run,
                index=index,
                t=dict(stamps),
                buffers={"volume": vol},
            )
        )
        stamps.update({"preprocess.received": now + 0.002, "preprocess.done": now + 0.004})
        raw = vol[mask]
        out.append(
            Message(
                "tr",
                seq=index,
                run=run,
                index=index,
                t=dict(stamps),
                buffers={"raw": raw, "z": np.zeros_like(raw)},
            )
        )
        if index in trials:
            trial, image_id = trials.pop(index)
            hit = correct[trial % len(correct)]
            others = [i for i in range(ways) if i != image_id]
            ids = [image_id, *others[: k - 1]] if hit else [others[0], image_id, *others[1 : k - 1]]
            stamps.update({"estimate.received": now + 0.005, "estimate.done": now + 0.02})
            meta = {
                "onset": (index - decode_delay) * tr,
                "duration": tr,
                "image_id": image_id,
                "repetition": 1,
                "split": "test",
                "decode_index": index,
                "truncated": False,
            }
            out.append(
                Message(
                    "response",
                    seq=trial,
                    run=run,
                    index=trial,
                    meta=dict(meta),
                    t=dict(stamps),
                    buffers={"response": raw.copy()},
                )
            )
            stamps.update({"decode.received": now + 0.021, "decode.done": now + 0.05})
            out.append(
                Message(
                    "retrieval",
                    seq=trial,
                    run=run,
                    index=trial,
                    meta={**meta, "rank": 1 if hit else 2, "in_bank": True, "ways": ways},
                    t=dict(stamps),
                    buffers={
                        "ids": np.array(ids, np.int64),
                        "scores": np.linspace(0.9, 0.5, k).astype(np.float32),
                        "embedding": np.zeros(4, np.float32),
                    },
                )
            )
            if recon is not None:
                compute = RECON_COMPUTE_S[recon]
                started = now + 0.06
                buffers = {"image": recon_image(trial)}
                if recon == "full":
                    buffers["blurry"] = blurry_image(trial)
                out.append(
                    Message(
                        "recon",
                        seq=trial,
                        run=run,
                        index=trial,
                        meta={
                            **meta,
                            "rank": 1 if hit else 2,
                            "mode": recon,
                            "compute_ms": 1e3 * compute,
                            "backlog": 0,
                            "generator": "tiny-random" if recon == "full" else None,
                        },
                        t={
                            **stamps,
                            "reconstruct.received": now + 0.051,
                            "reconstruct.started": started,
                            "reconstruct.done": started + compute,
                        },
                        buffers=buffers,
                    )
                )
                reconstructed += 1
        if index % 2 == 0:
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
    out.append(Message("log", meta={"stage": "decode", "level": "info", "text": "model loaded"}))
    out.append(Message("run_end", seq=next(seq), run=run, meta={"n_volumes": n_volumes}))
    out.append(Message("end", seq=next(seq), meta={"runs": [run]}))
    return out
