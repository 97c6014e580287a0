"""A realistic synthetic session for the console's layout test and its README picture.

:func:`synthetic_stream` gives the right messages with toy content; :func:`realistic_model`
dresses two runs of it up as an operator would see them: a head-shaped volume (2 mm voxels)
with a posterior ROI whose mean follows the trials' HRF responses, a bank of 50 coloured
stimulus images, top-5 retrievals over 50 ways with some misses, low-level reconstructions
(blurred true images), stage latencies that vary, and head motion with a few jerks, the
second run still going.  Seeded, so every rendering is the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from gui.model import SessionModel
from rt_wire.message import Message
from tests.gui.synthetic import FakeClock, synthetic_stream

SHAPE = (56, 66, 44)
VOXEL_MM = 2.0
N_IMAGES = 50
TR = 1.6


def head_volume(shape: tuple[int, int, int] = SHAPE, seed: int = 0) -> np.ndarray:
    """(X, Y, Z) float32: an ellipsoidal head: a bright rim (scalp), darker ventricles, and a
    smooth grey/white-matter-like texture in between; zero outside."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    r = np.sqrt(x**2 + y**2 + z**2)
    texture = ndimage.gaussian_filter(rng.normal(size=shape), 1.2)
    texture = (texture - texture.min()) / np.ptp(texture)
    head = 500 + 900 * texture
    head[r > 0.85] = 1500  # scalp
    ventricles = (np.abs(x) - 0.12) ** 2 / 0.01 + y**2 / 0.09 + (z - 0.1) ** 2 / 0.04 < 1
    head[ventricles] = 250
    return (head * (r < 0.95)).astype(np.float32)


def visual_roi(shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """(X, Y, Z) bool: a posterior blob both sides of the midline (a visual-cortex-like ROI)."""
    grid = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    x, y, z = grid
    return (np.abs(np.abs(x) - 0.25) < 0.16) & (y < -0.45) & (y > -0.8) & (np.abs(z) < 0.3)


def stimulus_bank(n: int = N_IMAGES, size: int = 64, seed: int = 3) -> np.ndarray:
    """(n, size, size, 3) uint8: smooth colour fields with a bright disc, each distinct."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        base = rng.uniform(30, 220, 3)
        slope = rng.uniform(-120, 120, (2, 3))
        img = base + xx[..., None] * slope[0] + yy[..., None] * slope[1]
        cx, cy, rad = rng.uniform(0.25, 0.75, 2).tolist() + [rng.uniform(0.12, 0.3)]
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2) < rad**2
        img[disc] = rng.uniform(120, 255, 3)
        out[i] = np.clip(img, 0, 255)
    return out


@dataclass
class SyntheticDataset:
    """What the console's dataset loader gives: the ROI mask and the stimulus images."""

    mask: np.ndarray
    images: np.ndarray

    def roi_mask(self) -> np.ndarray:
        return self.mask

    def stimuli(self) -> np.ndarray:
        return self.images


def _dress(msgs: list[Message], head: np.ndarray, mask: np.ndarray, images: np.ndarray, seed: int):
    """Replace the toy content of ``msgs`` (one run) in place with the realistic one."""
    rng = np.random.default_rng(seed)
    affine = np.diag([VOXEL_MM] * 3 + [1.0])
    affine[:3, 3] = -VOXEL_MM * np.array(SHAPE) / 2
    onsets = [m.meta["onset"] for m in msgs if m.kind == "trial"]
    n = sum(m.kind == "volume" for m in msgs)
    t = np.arange(n) * TR
    hrf = lambda s: np.where(s > 0, (s / 5) ** 5 * np.exp(-(s - 5)) / 1.0, 0)  # noqa: E731
    signal = sum(hrf(t - onset) for onset in onsets) * 0.012 + rng.normal(0, 0.002, n)
    for m in msgs:
        if m.kind == "run_start":
            m.meta.update(shape=list(SHAPE), affine=affine.tolist(), dataset="synthetic-demo")
        if m.t:  # stages take a varying time: stretch each message's stamps a little
            first = min(m.t.values())
            factor = float(rng.lognormal(0, 0.25))
            m.t = {k: first + (v - first) * factor for k, v in m.t.items()}
        if m.kind in ("volume", "tr") and m.index is not None:
            i = m.index
            vol = head * (1 + signal[i] * mask) + rng.normal(0, 4, head.shape).astype(np.float32)
            if m.kind == "volume":
                m.buffers["volume"] = vol.astype(np.float32)
            else:
                m.buffers = {"raw": vol[mask], "z": np.zeros(int(mask.sum()), np.float32)}
        if m.kind == "recon":
            true = images[m.meta["image_id"]].astype(np.float32)
            m.buffers = {"image": ndimage.gaussian_filter(true, (4, 4, 0)).astype(np.uint8)}


def realistic_messages(tr_of_run2: int = 70) -> list[Message]:
    """Run 1 whole (120 TRs, one jerk) and run 2 up to TR ``tr_of_run2`` (two jerks)."""
    head, mask, images = head_volume(), visual_roi(), stimulus_bank()
    common = dict(shape=(4, 4, 4), tr=TR, trial_every=4, decode_delay=5, k=5, ways=N_IMAGES,
                  correct=(True, True, False, True, True, False, True), recon="lowlevel",
                  motion="correct", dataset_path="synthetic", t0=1_700_000_000.0)  # fmt: skip
    run1 = synthetic_stream(n_volumes=120, run="run-01", motion_spikes=(44,), **common)[:-1]
    run2 = synthetic_stream(n_volumes=120, run="run-02", motion_spikes=(23, 57),
                            seq0=len(run1), **{**common, "t0": common["t0"] + 200})  # fmt: skip
    cut = next(i for i, m in enumerate(run2) if m.kind == "volume" and m.index == tr_of_run2)
    run2 = run2[:cut]  # the session is still going
    for i, run in enumerate((run1, run2)):
        for m in run:  # ids 0..ways-1 of the toy stream spread over the whole bank
            if m.kind in ("trial", "response", "retrieval", "recon") and "image_id" in m.meta:
                m.meta["image_id"] = (7 * m.meta["image_id"] + 3 * i + 11) % N_IMAGES
            if m.kind == "retrieval":
                m.buffers["ids"] = (7 * m.buffers["ids"] + 3 * i + 11) % N_IMAGES
        _dress(run, head, mask, images, seed=i)
    return run1 + run2


def empty_model(**model_options) -> SessionModel:
    """A :class:`~gui.model.SessionModel` for :func:`realistic_messages`: its dataset loader
    gives the synthetic ROI and images, its clock is a :class:`FakeClock` (``model._clock``)
    that :func:`feed_in_time` moves."""
    dataset = SyntheticDataset(visual_roi(), stimulus_bank())
    return SessionModel(dataset_loader=lambda _: dataset, clock=FakeClock(), **model_options)


def feed_in_time(model: SessionModel, msgs: list[Message]) -> None:
    """Feed ``msgs`` to a model of :func:`empty_model`, its clock following the messages'
    stamps (so latencies spread over the session time as they would live)."""
    clock = model._clock
    for msg in msgs:
        if msg.t:
            clock.now = max(clock.now, max(msg.t.values()))
        model.feed(msg)


def realistic_model(**model_options) -> SessionModel:
    """A model of :func:`empty_model` fed all of :func:`realistic_messages`."""
    model = empty_model(**model_options)
    feed_in_time(model, realistic_messages())
    return model
