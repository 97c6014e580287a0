"""Decode: MindEye retrieval of each trial's response over an image bank."""

from __future__ import annotations

import time

import numpy as np

from mindeye_models.ranks import true_ranks
from realtime.stages.base import Stage
from rt_base.checks import check_number
from rt_base.errors import MessageError
from rt_wire.message import Message


class DecodeStage(Stage):
    """Runs MindEye on each ``response`` and emits a ``retrieval`` (top-k ids and scores).

    Parameters
    ----------
    model : a loaded :class:`mindeye_models.model.MindEye` (eval mode).
    bank : a :class:`mindeye_models.bank.ImageBank` of candidate images.
    top_k : how many candidates to report per trial.
    device : torch device for the forward pass.
    emit_latents : also send a ``latent`` message (backbone tokens and the response) after each
        retrieval, for a reconstruct stage downstream.
    precision : the forward pass's arithmetic, ``fp32`` or ``int8`` (CPU; see
        :mod:`mindeye_models.decode_precision`).  The bank search is float32 either way.
    finetuner : a :class:`~realtime.stages.decode_finetune.BetweenRunsFinetuner` (``stream
        --finetune between-runs``): it is handed each decoded trial, starts a step at each
        ``run_end``, and better weights replace the model at a ``run_start``, never mid-run.
    """

    name = "decode"
    publish_kinds = frozenset({"retrieval"})

    def __init__(
        self,
        model,
        bank,
        *,
        top_k: int = 5,
        device: str = "cpu",
        emit_latents: bool = False,
        precision: str = "fp32",
        finetuner=None,
        **kwargs,
    ) -> None:
        from mindeye_models.decode_precision import for_inference

        super().__init__(**kwargs)
        self.emit_latents = bool(emit_latents)
        self.precision = precision
        self.model = for_inference(model, precision, device)
        self.bank = bank
        self.top_k = check_number(top_k, "top_k", minimum=1, integer=True)
        self.device = device
        self.decoded = 0
        self.forward_ms: list[float] = []
        self.finetuner = finetuner

    @classmethod
    def from_options(
        cls,
        links: dict,
        *,
        checkpoint: str,
        dataset: str,
        bank_ids: list[int],
        device: str = "cpu",
        clip_weights: str | None = None,
        cache_dir: str | None = None,
        top_k: int = 5,
        emit_latents: bool = False,
        precision: str = "fp32",
        finetune: dict | None = None,
    ) -> DecodeStage:
        """Build from a spec: loads the MindEye ``checkpoint`` and builds the bank of
        ``bank_ids`` (images of ``dataset``) before the stage starts."""
        from realtime.models import load_decoder

        model, bank = load_decoder(
            checkpoint,
            dataset,
            bank_ids,
            device=device,
            clip_weights=clip_weights,
            cache_dir=cache_dir,
        )
        device = str(next(model.parameters()).device)
        stage = cls(
            model,
            bank,
            top_k=top_k,
            device=device,
            emit_latents=emit_latents,
            precision=precision,
            **links,
        )
        if finetune:
            from realtime.stages.decode_finetune import finetuner_from_spec

            stage.finetuner = finetuner_from_spec(
                finetune,
                checkpoint=checkpoint,
                dataset=dataset,
                device=device,
                clip_weights=clip_weights,
                cache_dir=cache_dir,
                report=stage.report,
            )
        stage.warm_up()
        return stage

    def warm_up(self, repeats: int = 3) -> None:
        """Run the forward pass and the bank search on a blank response a few times, so the
        first trial of a session is as fast as the others (lazy initialisation, allocator)."""
        import torch

        n_voxels = getattr(getattr(self.model, "config", None), "n_voxels", None)
        if n_voxels is None:
            return
        x = torch.zeros(1, int(n_voxels), device=self.device)
        with torch.inference_mode():
            for _ in range(repeats):
                _, projected = self.model(x)
                self.bank.retrieve(projected[:1].float(), k=len(self.bank))

    def status(self) -> dict:
        recent = self.forward_ms[-20:]
        return {
            **self.counters,
            "decoded": self.decoded,
            "precision": self.precision,
            "forward_ms": float(np.median(recent)) if recent else None,
            **(self.finetuner.status() if self.finetuner is not None else {}),
        }

    def idle(self):
        """A fine-tune step that has just settled is published at once (a source waits)."""
        if self.finetuner is not None and self.finetuner.poll():
            self._publish_status()
        return ()

    def finish(self):
        if self.finetuner is not None:
            self.finetuner.close()
        return ()

    def handle(self, msg: Message):
        if self.finetuner is not None and msg.kind in ("run_start", "run_end"):
            self._between_runs(msg)
        if msg.kind != "response":
            return [msg]
        import torch

        response = self._response_of(msg)
        start = time.perf_counter()
        x = torch.from_numpy(np.array(response, np.float32, copy=True))[None]
        with torch.inference_mode():
            tokens, projected = self.model(x.to(self.device))
        # searched where the bank searches (the decoder's device: load_decoder), then copied
        ids, scores = self.bank.retrieve(projected[:1].float(), k=len(self.bank))
        emb = projected[0].float().cpu()
        ids, scores = np.asarray(ids[0]), np.asarray(scores[0], np.float32)
        self.forward_ms.append(1e3 * (time.perf_counter() - start))
        true_id = msg.meta.get("image_id")
        rank = true_ranks(ids, true_id) or None  # None: not in the bank, not scored
        k = min(self.top_k, len(ids))
        self.decoded += 1
        if self.finetuner is not None:
            self.finetuner.observe(msg.run, msg.index, true_id, response)
        out = msg.derive(
            "retrieval",
            meta={**msg.meta, "rank": rank, "in_bank": rank is not None, "ways": len(ids)},
            buffers={
                "ids": ids[:k].astype(np.int64),
                "scores": scores[:k],
                "embedding": emb.numpy().astype(np.float32),
            },
        )
        if not self.emit_latents:
            return [msg, out]
        latent = msg.derive(
            "latent",
            meta=dict(out.meta),
            buffers={
                "tokens": tokens[0].float().cpu().numpy(),
                "response": np.asarray(response, np.float32),
            },
        )
        return [msg, out, latent]

    def _between_runs(self, msg: Message) -> None:
        """Start a fine-tune step at ``run_end``; swap in better weights at ``run_start``."""
        if msg.kind == "run_end":
            self.finetuner.run_ended(msg.run)
            return
        model = self.finetuner.take_swap(msg.run)
        if model is not None:
            from mindeye_models.decode_precision import for_inference

            self.model = for_inference(model, self.precision, self.device)

    def _response_of(self, msg: Message) -> np.ndarray:
        """The (V,) response buffer of ``msg``, V being the model's voxel count."""
        response = msg.buffers.get("response")
        n_voxels = getattr(getattr(self.model, "config", None), "n_voxels", None)
        ok = response is not None and response.ndim == 1
        if ok and n_voxels is not None:
            ok = response.shape[0] == n_voxels
        if not ok:
            got = None if response is None else response.shape
            raise MessageError(
                f"the response of run {msg.run!r} trial {msg.index} must have a 'response' buffer "
                f"of shape ({n_voxels or 'V'},) (the model's voxels), got {got}"
            )
        return response
