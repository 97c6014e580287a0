"""The console's retrieval panel (:mod:`gui.retrieval_panel`): the reconstruction card's texts."""

from __future__ import annotations

import numpy as np

from gui.retrieval_panel import recon_caption, recon_tooltip
from gui.state import Recon, RetrievalInfo


def _retrieval(run: str, trial: int) -> RetrievalInfo:
    ids = np.array([1])
    return RetrievalInfo(run, trial, ids, ids.astype(np.float32), 1, 1, 2, None, None)


def test_the_recon_caption_says_how_far_behind_it_is():
    rec = Recon("run-01", 4, np.zeros((8, 6, 3), np.uint8), mode="full", compute_ms=512.4)
    assert recon_caption(rec, None) == "recon · trial 4\nfull · 512 ms"
    assert recon_caption(rec, _retrieval("run-01", 6)).startswith("recon · trial 4 (2 behind)")
    assert recon_caption(rec, _retrieval("run-02", 0)).startswith("recon · trial 4 of run-01")
    assert recon_caption(Recon("r", 1, rec.image), None) == "recon · trial 1"


def test_the_recon_tooltip_lists_what_the_message_said():
    rec = Recon("run-01", 4, np.zeros((8, 6, 3), np.uint8), np.zeros((2, 2, 3), np.uint8),
                mode="full", compute_ms=5, backlog=2, image_id=9, generator="unclip")  # fmt: skip
    assert recon_tooltip(rec).splitlines() == [
        "reconstruction of run-01 trial 4", "seen image id 9", "mode full (unclip)",
        "computed in 5 ms", "2 trial(s) were queued behind it",
        "image 6×8, blurry image beside it",
    ]  # fmt: skip
