"""The session model's handlers of trials, retrievals and reconstructions.

``trial`` puts a trial on the timeline; ``response`` marks when it was estimated;
``retrieval`` records the top-k images, scores it and adds it to the running accuracy;
``recon`` keeps the newest reconstruction (buffer ``image`` (H, W, 3) uint8, in ``"full"``
mode also ``blurry``) and marks its trial reconstructed.  A trial whose ``trial`` event was not
seen (a console that joined late) is put on the timeline by the first message about it.
"""

from __future__ import annotations

import numpy as np

from gui.model_state import ModelState
from gui.state import Recon, RetrievalInfo, TrialInfo
from gui.values import as_float, as_int, describe_array, is_rgb
from rt_wire.message import Message


class TrialFeed(ModelState):
    """Handlers of ``trial``, ``response``, ``retrieval`` and ``recon``."""

    def _on_trial(self, msg: Message) -> None:
        if msg.index is None:
            return
        if (msg.run, int(msg.index)) in self._trials:
            return  # estimate republishes the source's trial events
        self._trial_for(msg)  # records it
        self._versions["trials"] += 1

    def _on_response(self, msg: Message) -> None:
        trial = self._trial_for(msg)
        if trial is not None:
            trial.decode_time = self._decode_time(msg)
            trial.truncated = bool(msg.meta.get("truncated", False))
            self._versions["trials"] += 1

    def _on_retrieval(self, msg: Message) -> None:
        ids = np.asarray(msg.buffers.get("ids", np.zeros(0, np.int64))).astype(np.int64)
        scores = np.asarray(msg.buffers.get("scores", np.zeros(0, np.float32)), np.float32)
        meta = msg.meta
        rank, ways = as_int(meta.get("rank")), as_int(meta.get("ways"))
        self._retrieval = RetrievalInfo(
            run=msg.run,
            trial=msg.index,
            ids=ids.copy(),
            scores=scores.copy(),
            true_id=as_int(meta.get("image_id")),
            rank=rank,
            ways=ways,
            split=meta.get("split"),
            repetition=as_int(meta.get("repetition")),
        )
        self._score(rank, ways, int(ids.size))
        trial = self._trial_for(msg)
        if trial is not None:
            trial.decoded = True
            trial.rank = rank
            trial.top1 = int(ids[0]) if ids.size else None
            if trial.decode_time is None:
                trial.decode_time = self._decode_time(msg)
            self._versions["trials"] += 1
        self._versions["retrieval"] += 1

    def _score(self, rank: int | None, ways: int | None, k: int) -> None:
        """Add a retrieval of ``k`` images, the true one at ``rank`` (None: not scored) among
        ``ways`` candidates, to the running accuracy."""
        acc = self._accuracy
        acc.decoded += 1
        acc.k = max(acc.k, k)
        if ways:
            acc.ways = ways
        if rank is not None:
            acc.scored += 1
            acc.top1 += rank == 1
            acc.topk += rank <= max(1, k)
            acc.rank_sum += rank
            self._history.append(acc.top1 / acc.scored)

    def _on_recon(self, msg: Message) -> None:
        image = msg.buffers.get("image")
        if not is_rgb(image):
            self.add_log(
                "console",
                "warning",
                f"dropped a 'recon' message of trial {msg.index}: it needs buffer 'image' "
                f"(H, W, 3) uint8, got {describe_array(image)}",
            )
            return
        blurry = msg.buffers.get("blurry")
        if blurry is not None and not is_rgb(blurry):
            self.add_log(
                "console",
                "warning",
                f"ignored the 'blurry' image of trial {msg.index}'s reconstruction: it must be "
                f"(h, w, 3) uint8, got {describe_array(blurry)}",
            )
            blurry = None
        meta = msg.meta
        mode, generator = meta.get("mode"), meta.get("generator")
        self._recon = Recon(
            run=msg.run,
            trial=msg.index,
            image=np.array(image),  # a copy: the received frame's memory is not kept
            blurry=None if blurry is None else np.array(blurry),
            mode=mode if isinstance(mode, str) else None,
            compute_ms=as_float(meta.get("compute_ms")),
            backlog=as_int(meta.get("backlog")),
            image_id=as_int(meta.get("image_id")),
            generator=generator if isinstance(generator, str) else None,
        )
        self._versions["recon"] += 1
        # only a trial already on the timeline is marked: a late reconstruction of a run that
        # is no longer shown must not bring its trial back
        trial = None if msg.index is None else self._trials.get((msg.run, int(msg.index)))
        if trial is not None and not trial.reconstructed:
            trial.reconstructed = True
            self._versions["trials"] += 1

    # -- helpers -----------------------------------------------------------------------------
    def _trial_for(self, msg: Message) -> TrialInfo | None:
        """The timeline's record of ``msg``'s trial, added (oldest dropped beyond
        ``trial_len``) if new; None for a message without a trial index."""
        if msg.index is None:
            return None
        trial = self._trials.get((msg.run, int(msg.index)))
        if trial is None:  # a new trial (or joined late: its trial event was not seen)
            meta = msg.meta
            trial = TrialInfo(
                run=msg.run,
                index=int(msg.index),
                onset=as_float(meta.get("onset")) or 0.0,
                duration=as_float(meta.get("duration")) or 0.0,
                image_id=as_int(meta.get("image_id")),
                split=meta.get("split"),
                repetition=as_int(meta.get("repetition")),
            )
            self._trials[(msg.run, int(msg.index))] = trial
            while len(self._trials) > self._trial_len:
                self._trials.popitem(last=False)
        return trial

    def _decode_time(self, msg: Message) -> float | None:
        """Data time (s) of the volume at which ``msg``'s trial was decoded, if known."""
        index = as_int(msg.meta.get("decode_index"))
        if index is None or not self.session.tr:
            return None
        return index * self.session.tr
