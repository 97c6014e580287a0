"""Rehearsal data of a fine-tune step: the trials the starting model was trained on.

A step between runs trains on the few dozen trials of the current session; with rehearsal each
batch also carries trials of the subject's earlier session(s) — the responses and images the
starting ``lin0`` was trained on — so the step adapts to today's responses without forgetting
what the first session taught it (the real-time MindEye study fine-tuned on the earlier
sessions).  The lab gives them as one ``.npz`` file (numpy's zip of ``.npy`` arrays, read with
``allow_pickle=False``)::

    format          str scalar   "mindeye-rt-rehearsal"
    format_version  int scalar   1
    embedder        str scalar   the embedder of ``targets`` (the model's, e.g. "ViT-L-14")
    voxels          (N, V)       float16 or float32: one response per trial, the same voxels,
                                 order and units the decode stage feeds the model (the model's
                                 own input normalization is applied to both)
    image_ids       (N,)         integer: the image of each trial
    target_ids      (M,)         integer, no repeats: the images of the trials
    targets         (M, T, D)    float16 or float32: their image embeddings (the tokens the
                                 model predicts, by ``embedder``)

Every id of ``image_ids`` must be in ``target_ids``; N >= 2.  :func:`check_rehearsal_file`
checks the layout from the arrays' headers without reading them (for the stream's options);
:func:`read_rehearsal` reads and checks everything, and against the model when given one.  A
session records the file's path and sha256 (:func:`rehearsal_record`); a step refuses a file
whose content changed since (:func:`read_rehearsal` with ``sha256``).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mindeye_models.bank import ImageBank
from rt_base.errors import ConfigError
from rt_base.hashing import file_sha256

FORMAT = "mindeye-rt-rehearsal"
FORMAT_VERSION = 1
ARRAYS = ("format", "format_version", "embedder", "voxels", "image_ids", "target_ids", "targets")
_FLOATS = (np.dtype(np.float16), np.dtype(np.float32))


@dataclass
class Rehearsal:
    """A rehearsal file's content: responses (N, V) float32, image ids (N,), the images' bank."""

    voxels: np.ndarray
    image_ids: np.ndarray
    bank: ImageBank
    embedder: str
    path: str = ""
    sha256: str = ""

    def __len__(self) -> int:
        return len(self.image_ids)


def write_rehearsal(
    path: str | Path,
    voxels: np.ndarray,
    image_ids: np.ndarray,
    bank: ImageBank,
    embedder: str,
    *,
    dtype: Any = np.float32,
) -> Path:
    """Write a rehearsal file (atomically); ``bank`` holds the embeddings of (at least) every
    image of ``image_ids`` — only those are written.  ``dtype`` float16 halves the size."""
    from rt_base.atomic import write_with

    image_ids = np.asarray(image_ids, np.int64).reshape(-1)
    target_ids = np.unique(image_ids)
    arrays = {
        "format": np.array(FORMAT),
        "format_version": np.array(FORMAT_VERSION),
        "embedder": np.array(str(embedder)),
        "voxels": np.asarray(voxels, dtype),
        "image_ids": image_ids,
        "target_ids": target_ids,
        "targets": bank.lookup(target_ids).astype(dtype),
    }
    _check_layout(path, {k: (v.shape, v.dtype) for k, v in arrays.items()})

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.savez would append ".npz" to a name
            np.savez(fh, **arrays)

    return write_with(Path(path), save)


def check_rehearsal_file(path: str | Path) -> dict[str, tuple]:
    """Check a rehearsal file's layout from its arrays' headers (fast: no data is read); returns
    ``{name: (shape, dtype)}``.  ConfigError names what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"rehearsal file {str(path)!r} does not exist: give an .npz written by "
            "mindeye_models.finetune_rehearsal.write_rehearsal (README, 'Fine-tuning between runs')"
        )
    headers = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    read = getattr(np.lib.format, f"read_array_header_{version[0]}_0")
                    shape, _, dtype = read(fh)
                headers[info.filename[:-4]] = (tuple(shape), np.dtype(dtype))
    except (zipfile.BadZipFile, ValueError, OSError) as err:
        raise ConfigError(f"rehearsal file {str(path)!r} is not an .npz of arrays: {err}") from err
    _check_layout(path, headers)
    return headers


def read_rehearsal(
    path: str | Path,
    *,
    sha256: str | None = None,
    n_voxels: int | None = None,
    token_shape: tuple[int, int] | None = None,
    embedder: str | None = None,
) -> Rehearsal:
    """Read and check a rehearsal file.  ``sha256``: the content recorded when the session
    started (a changed file is refused); ``n_voxels``, ``token_shape``, ``embedder``: the
    model's, which the file must match."""
    path = Path(path)
    check_rehearsal_file(path)
    digest = file_sha256(path)
    if sha256 is not None and digest != sha256:
        raise ConfigError(
            f"rehearsal file {str(path)!r} changed since the session recorded it (sha256 "
            f"{digest[:12]}..., recorded {sha256[:12]}...): give the file the session used"
        )
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in ARRAYS}
    if str(arrays["format"]) != FORMAT or int(arrays["format_version"]) != FORMAT_VERSION:
        raise ConfigError(
            f"rehearsal file {str(path)!r} is format {str(arrays['format'])!r} version "
            f"{arrays['format_version']}, expected {FORMAT!r} version {FORMAT_VERSION}"
        )
    name = str(arrays["embedder"])
    voxels = arrays["voxels"].astype(np.float32)
    ids = arrays["image_ids"].astype(np.int64)
    target_ids = arrays["target_ids"].astype(np.int64)
    if len(np.unique(target_ids)) != len(target_ids):
        raise ConfigError(f"rehearsal file {str(path)!r}: 'target_ids' has repeats")
    missing = np.setdiff1d(ids, target_ids)
    if len(missing):
        raise ConfigError(
            f"rehearsal file {str(path)!r}: {len(missing)} image id(s) of 'image_ids' have no "
            f"embedding in 'target_ids' (e.g. {int(missing[0])})"
        )
    if not (np.all(np.isfinite(voxels)) and np.all(np.isfinite(arrays["targets"]))):
        raise ConfigError(f"rehearsal file {str(path)!r}: 'voxels' or 'targets' is not finite")
    bank = ImageBank(target_ids, arrays["targets"].astype(np.float32))
    if n_voxels is not None and voxels.shape[1] != int(n_voxels):
        raise ConfigError(
            f"rehearsal file {str(path)!r} has {voxels.shape[1]} voxels; the model takes "
            f"{n_voxels}: give the responses of this subject's ROI"
        )
    if token_shape is not None and bank.token_shape != tuple(token_shape):
        raise ConfigError(
            f"rehearsal file {str(path)!r} has embeddings of shape {bank.token_shape}; the "
            f"model predicts {tuple(token_shape)}"
        )
    if embedder is not None and name != embedder:
        raise ConfigError(
            f"rehearsal file {str(path)!r} has embeddings by {name!r}; the model's embedder is "
            f"{embedder!r}"
        )
    return Rehearsal(voxels, ids, bank, name, str(path), digest)


def rehearsal_record(path: str | Path) -> dict[str, Any]:
    """What a session records of a rehearsal file (checked): its absolute path, sha256, trials
    and voxels."""
    headers = check_rehearsal_file(path)
    n, v = headers["voxels"][0]
    record = {"path": str(Path(path).resolve()), "sha256": file_sha256(path)}
    return {**record, "n_trials": int(n), "n_voxels": int(v)}


def _check_layout(path, headers: dict[str, tuple]) -> None:
    """The arrays, their ranks, dtypes and matching lengths."""
    where = f"rehearsal file {str(path)!r}"
    missing = [k for k in ARRAYS if k not in headers]
    if missing:
        raise ConfigError(f"{where} lacks the array(s) {missing}; it needs {list(ARRAYS)}")
    shape = {k: headers[k][0] for k in ARRAYS}
    dtype = {k: headers[k][1] for k in ARRAYS}
    for key in ("format", "embedder"):
        if shape[key] != () or dtype[key].kind != "U":
            raise ConfigError(f"{where}: {key!r} must be a string scalar")
    if shape["format_version"] != () or dtype["format_version"].kind not in "iu":
        raise ConfigError(f"{where}: 'format_version' must be an integer scalar")
    for key in ("image_ids", "target_ids"):
        if len(shape[key]) != 1 or dtype[key].kind not in "iu":
            raise ConfigError(f"{where}: {key!r} must be a 1-d integer array, got {shape[key]}")
    for key, rank in (("voxels", 2), ("targets", 3)):
        if len(shape[key]) != rank or dtype[key] not in _FLOATS:
            raise ConfigError(
                f"{where}: {key!r} must be a {rank}-d float16 or float32 array, got shape "
                f"{shape[key]} {dtype[key]}"
            )
    n = shape["image_ids"][0]
    if shape["voxels"][0] != n or n < 2:
        raise ConfigError(
            f"{where}: 'voxels' {shape['voxels']} must have one row per image id ({n}), at least 2"
        )
    if shape["targets"][0] != shape["target_ids"][0]:
        raise ConfigError(
            f"{where}: 'targets' {shape['targets']} must have one embedding per target id "
            f"({shape['target_ids'][0]})"
        )
