"""Retrieval bank: CLIP tokens of candidate images, searched by cosine similarity.

The tokens are embedded once per (embedder, image set) and cached as a safetensors file
keyed by the embedder's identity and a hash of the images, so a later run loads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mindeye_models.losses import flat_normalize
from rt_base.atomic import write_with
from rt_base.checks import check_number
from rt_base.errors import ConfigError, WeightsError
from rt_base.hashing import array_sha256


class ImageBank:
    """Candidate images' CLIP tokens.

    Parameters
    ----------
    ids : (N,) unique integer image ids.
    tokens : (N, T, D) float array or tensor, the tokens of each image.
    """

    def __init__(self, ids: np.ndarray, tokens: np.ndarray | torch.Tensor) -> None:
        ids = np.asarray(ids).reshape(-1)
        if ids.dtype.kind not in "iu":
            raise ConfigError(f"'ids' must be integers, got dtype {ids.dtype}")
        ids = ids.astype(np.int64)
        if not isinstance(tokens, torch.Tensor):
            tokens = torch.from_numpy(np.asarray(tokens, dtype=np.float32))
        if tokens.ndim != 3 or len(tokens) != len(ids):
            raise ConfigError(
                f"'tokens' must be (N={len(ids)}, T, D) to match 'ids', got shape "
                f"{tuple(tokens.shape)}"
            )
        if len(np.unique(ids)) != len(ids):
            raise ConfigError("'ids' must be unique: each image appears once in a bank")
        self.ids = ids
        self.tokens = tokens.detach().float().cpu().contiguous()
        self._order = np.argsort(ids, kind="stable")
        self._flat: torch.Tensor | None = None
        self.search_device = torch.device("cpu")

    def search_on(self, device: str | torch.device) -> ImageBank:
        """Search on ``device`` from now on (returns the bank).

        A search reads the whole bank: at MindEye1's size (257 x 768 tokens) 1,000 images are
        0.8 GB of float32, read once per trial, so a decoder on a GPU keeps its normalised copy
        there; the tokens themselves (lookups, saving) stay on the host.
        """
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise ConfigError(
                f"'device' must be a torch device such as cpu or cuda, got {device!r}"
            ) from err
        if device != self.search_device:
            self.search_device, self._flat = device, None
        return self

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def token_shape(self) -> tuple[int, int]:
        """``(T, D)``."""
        return (int(self.tokens.shape[1]), int(self.tokens.shape[2]))

    def positions(self, ids: np.ndarray) -> np.ndarray:
        """Row of each id in the bank; unknown ids raise :class:`ConfigError`."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        sorted_ids = self.ids[self._order]
        pos = np.searchsorted(sorted_ids, ids).clip(0, max(len(self) - 1, 0))
        if len(self) == 0 or not np.array_equal(sorted_ids[pos], ids):
            missing = np.setdiff1d(ids, self.ids)[:5].tolist()
            raise ConfigError(
                f"image ids {missing} are not in the bank: build the bank from every image "
                "you look up or retrieve among"
            )
        return self._order[pos]

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """(n,) ids -> (n, T, D) float32 tokens (e.g. training targets of trials)."""
        return self.tokens[torch.from_numpy(self.positions(ids))].numpy()

    @torch.no_grad()
    def retrieve(
        self,
        pred: np.ndarray | torch.Tensor,
        k: int = 5,
        subset: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` bank images most similar to each prediction.

        Parameters
        ----------
        pred : (B, T, D) predicted tokens.
        k : number of images returned per prediction.
        subset : optional ids; only these images are candidates.

        Returns
        -------
        ids : (B, k) int64 array, best first.
        scores : (B, k) float32 array, cosine similarities of the flattened tokens.
        """
        pred = torch.as_tensor(pred).detach().float().to(self.search_device)
        if pred.ndim != 3 or tuple(pred.shape[1:]) != self.token_shape:
            raise ConfigError(
                f"'pred' must be (B, {self.token_shape[0]}, {self.token_shape[1]}) tokens of "
                f"the bank's embedder, got shape {tuple(pred.shape)}"
            )
        if self._flat is None:
            self._flat = flat_normalize(self.tokens.to(self.search_device))
        cand = np.arange(len(self)) if subset is None else np.unique(self.positions(subset))
        k = check_number(k, "k", minimum=1, maximum=len(cand), integer=True)
        bank = self._flat
        if subset is not None:
            bank = bank[torch.from_numpy(cand).to(self.search_device)]
        sims = flat_normalize(pred) @ bank.T
        scores, top = sims.topk(k, dim=-1)
        return self.ids[cand[top.cpu().numpy()]], scores.cpu().numpy().astype(np.float32)

    def save(self, path: str | Path, metadata: dict[str, str] | None = None) -> None:
        """Write ids and tokens to a safetensors file (atomically)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"ids": torch.from_numpy(self.ids.copy()), "tokens": self.tokens}
        write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata or {}))

    @classmethod
    def load(cls, path: str | Path) -> ImageBank:
        """Read a bank written by :meth:`save`."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise WeightsError(
                f"image bank file {str(path)!r} does not exist: build it with "
                "ImageBank.build(images, ids, embedder, cache_dir=...)"
            )
        try:
            data = load_file(str(path))
            return cls(data["ids"].numpy(), data["tokens"])
        except (SafetensorError, KeyError, ConfigError) as err:
            raise WeightsError(f"{str(path)!r} is not an image bank file: {err}") from err

    @classmethod
    def build(
        cls,
        images: np.ndarray,
        ids: np.ndarray,
        embedder: Any,
        cache_dir: str | Path | None = None,
        *,
        batch_size: int = 64,
    ) -> ImageBank:
        """Embed ``images`` with ``embedder``, or load the cached tokens of an earlier run.

        Parameters
        ----------
        images : (N, H, W, 3) uint8 array (a memmap is fine).
        ids : (N,) image id of each row.
        embedder : an :class:`~mindeye_models.embedder.ImageEmbedder` (``.embed``,
            ``.identity``).
        cache_dir : folder of cached banks; None disables caching.
        """
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if images.ndim != 4 or images.shape[-1] != 3 or len(images) != len(ids):
            raise ConfigError(
                f"'images' must be (N={len(ids)}, H, W, 3) uint8 to match 'ids', got shape "
                f"{images.shape}"
            )
        path = None
        if cache_dir is not None:
            key = images_hash(images, ids)
            path = Path(cache_dir) / f"bank-{embedder.identity}-{key}.safetensors"
            if path.is_file():
                try:
                    bank = cls.load(path)
                    if np.array_equal(bank.ids, ids):
                        return bank
                except WeightsError:
                    pass  # a damaged cache file is rebuilt below
        tokens = [
            embedder.embed(np.asarray(images[i : i + batch_size]))
            for i in range(0, len(images), batch_size)
        ]
        if tokens:
            tokens = np.concatenate(tokens)
        else:
            tokens = np.zeros((0, *embedder.token_shape), np.float32)
        bank = cls(ids, tokens)
        if path is not None:
            bank.save(path, metadata={"embedder_identity": str(embedder.identity)})
        return bank


def images_hash(images: np.ndarray, ids: np.ndarray | None = None) -> str:
    """Short sha256 (16 hex digits) of an image array (shape, dtype, pixels) and optionally its
    ids; read 256 images at a time, so a memmap is never copied whole."""
    chunks = [images[i : i + 256] for i in range(0, len(images), 256)]
    head = [] if ids is None else [np.asarray(ids, np.int64)]
    return array_sha256(np.asarray(images.shape), *head, *chunks)[:16]
