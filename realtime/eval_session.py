"""``mindeye-rt eval SESSION_DIR``: a recorded session scored the way the MindEye papers score
a subject, written into the session folder as ``eval.json`` and ``eval.md``.

What it reads (the recorder's layout, :mod:`realtime.stages.recorder`): ``config.json`` (the
dataset, checkpoint and bank of the session), ``retrievals.tsv`` (one row per decoded trial),
``trials/NNNN_embedding.npy`` (the model's projected tokens as decoded in real time),
``trials/NNNN_response.npy`` (the trial's estimated response) and, when a reconstruct stage
ran, ``recons.tsv`` with the PNGs.  The seen images come from the session's dataset.

Scored: the test trials whose image is in the session's bank (a test image may have been shown
several times).  Retrieval (:mod:`mindeye_models.eval_retrieval`) on single trials (the
real-time predictions) and on repetition-averaged trials (each image's responses averaged, then
decoded by the session's model, as the papers do); reconstruction metrics
(:mod:`mindeye_models.eval_recon`) of the single-trial reconstructions the session made and of
the low-level reconstructions of the repetition-averaged responses, drawn here by the session's
reconstruction models (the generator of a ``full`` session is not run again).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mindeye_models.eval_retrieval import DRAWS, SAMPLE_SIZE, repetition_average
from realtime.eval_table import markdown_table
from realtime.summary import read_recons, read_retrievals
from rt_base.atomic import write_json, write_text
from rt_base.checks import check_path
from rt_base.errors import ConfigError

#: the reconstruction tables of the images the recorder saved, and their ``recons.tsv`` column
RECORDED = {"recon": "recon_file", "blurry": "blurry_file"}
EVAL_JSON = "eval.json"
EVAL_MARKDOWN = "eval.md"


def load_session(out: str | Path) -> tuple[Path, dict]:
    """The session folder and its ``config.json``; a folder that is not a session is refused."""
    out = check_path(out, "session", kind="dir")
    check_path(
        out / "config.json",
        "session",
        kind="file",
        remedy=f"{str(out)!r} is not a session folder (no config.json)",
    )
    return out, json.loads((out / "config.json").read_text())


def test_trials(retrievals: list[dict], bank_ids) -> list[dict]:
    """The decoded trials that can be scored: split ``test`` (any split when the session has
    none) and an image in the bank."""
    bank = {int(i) for i in bank_ids}

    def known(row: dict) -> bool:
        try:
            return int(row["image_id"]) in bank
        except (TypeError, ValueError):
            return False

    rows = [r for r in retrievals if known(r)]
    tests = [r for r in rows if r.get("split") == "test"]
    return tests or rows


def session_decoder(session: dict, device: str | None = None):
    """The session's MindEye model and image bank, as its decode stage had them."""
    from realtime.models import load_decoder

    cfg = session.get("config", {})
    return load_decoder(
        session["checkpoint"],
        session["dataset"],
        session["bank_ids"],
        device=device or cfg.get("device", "cpu"),
        clip_weights=cfg.get("clip_weights"),
        cache_dir=session.get("cache_dir"),
    )


def _trial_array(out: Path, rows: list[dict], what: str) -> np.ndarray:
    paths = [out / "trials" / f"{int(r['n']):04d}_{what}.npy" for r in rows]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ConfigError(
            f"the session folder lacks {len(missing)} trial {what} file(s), e.g. {missing[0]}; "
            "was the session interrupted? Score only complete sessions"
        )
    return np.stack([np.load(p) for p in paths])


def retrieval_section(
    out: Path,
    rows: list[dict],
    averaged: tuple[np.ndarray, np.ndarray, np.ndarray],
    model,
    bank,
    *,
    sample_size: int = SAMPLE_SIZE,
    draws: int = DRAWS,
    seed: int = 0,
) -> dict:
    """Retrieval both ways on single trials (the predictions recorded in real time) and on the
    repetition-averaged responses ``averaged`` (:func:`repetition_average`), decoded here."""
    from mindeye_models.eval_retrieval import retrieval_accuracy
    from mindeye_models.inference import predict

    trial_ids = np.array([int(r["image_id"]) for r in rows])
    means, ids, counts = averaged
    tokens = bank.lookup(ids)
    kw = dict(sample_size=sample_size, draws=draws, seed=seed)
    single = retrieval_accuracy(
        _trial_array(out, rows, "embedding"), tokens, np.searchsorted(ids, trial_ids), **kw
    )
    _, projected = predict(model, means)
    result = retrieval_accuracy(projected.numpy(), tokens, None, **kw)
    result["repetitions_mean"] = float(counts.mean())
    return {"single_trial": single, "repetition_averaged": result}


def _load_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def _recorded(out: Path, rows: list[dict], column: str) -> tuple[np.ndarray, np.ndarray, list]:
    """The scored trials' images recorded in ``recons.tsv``'s ``column``: (images, image ids,
    modes); empty when there are none."""
    scored = {(r["run"], r["trial"]): int(r["image_id"]) for r in rows}
    have = [
        r
        for r in read_recons(out)
        if (r["run"], r["trial"]) in scored and r.get(column) and (out / r[column]).is_file()
    ]
    if not have:
        return np.zeros((0, 1, 1, 3), np.uint8), np.zeros(0, np.int64), []
    images = np.stack([_load_png(out / r[column]) for r in have])
    ids = np.array([scored[(r["run"], r["trial"])] for r in have])
    return images, ids, sorted({r.get("mode", "") for r in have})


def averaged_lowlevel(session: dict, means: np.ndarray, device: str) -> np.ndarray | None:
    """The session's low-level reconstructions of repetition-averaged responses (its bundle's
    head and autoencoder, as its reconstruct stage draws a trial); None without them."""
    import torch

    from mindeye_models.recon_bundle import load_bundle

    path = session.get("recon_bundle")
    if not path or not Path(path).is_file():
        return None
    bundle = load_bundle(path, device=device)
    if "lowlevel" not in bundle.parts:
        return None
    with torch.no_grad():
        return bundle.blurry(torch.from_numpy(np.asarray(means, np.float32)).to(device))


def recon_section(
    out: Path,
    session: dict,
    rows: list[dict],
    averaged: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    weights_dir: str | Path | None,
    device: str = "cpu",
    size: int = 425,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict | None:
    """The reconstruction tables: ``recon`` (the session's single-trial reconstructions),
    ``blurry`` (their blurry images, full mode), and ``averaged_lowlevel`` (the low-level
    reconstructions of the repetition-averaged responses, drawn here by the session's bundle);
    None when the session reconstructed nothing."""
    from mindeye_models.eval_recon import reconstruction_table
    from replay_data.dataset_reader import ReplayDataset

    sources = {kind: _recorded(out, rows, column) for kind, column in RECORDED.items()}
    if not any(len(ids) for _, ids, _ in sources.values()):
        return None
    means, mean_ids, _ = averaged
    drawn = averaged_lowlevel(session, means, device)
    if drawn is not None:
        sources["averaged_lowlevel"] = (drawn, mean_ids, ["lowlevel, repetition-averaged"])
    stimuli = ReplayDataset.open(session["dataset"]).stimuli()
    section: dict = {}
    for kind, (images, trial_ids, modes) in sources.items():
        ids = np.unique(trial_ids)
        if len(ids) < 2:
            continue
        log(f"{kind}: {len(images)} reconstructions of {len(ids)} images")
        section[kind] = reconstruction_table(
            images,
            np.asarray(stimuli[ids]),
            np.searchsorted(ids, trial_ids),
            weights_dir=weights_dir,
            device=device,
            size=size,
            seed=seed,
            log=log,
        )
        section[kind]["mode"] = modes
    return section or None


def evaluate_session(
    out: str | Path,
    *,
    weights_dir: str | Path | None = None,
    device: str | None = None,
    recon_size: int = 425,
    sample_size: int = SAMPLE_SIZE,
    draws: int = DRAWS,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict:
    """Score a session folder as the papers do; write ``eval.json`` and ``eval.md`` into it.

    Parameters
    ----------
    out : the session folder.
    weights_dir : the feature networks' weights files (``--eval-weights``); None: the
        network metrics are listed as not computed.
    device : torch device (default: the session's).
    recon_size : side (px) of PixCorr and SSIM (425 in the papers).
    sample_size, draws, seed : the retrieval protocol (300, 30).
    log : progress and the printed table.

    Returns
    -------
    What ``eval.json`` holds.
    """
    t0 = time.perf_counter()
    out, session = load_session(out)
    if weights_dir is not None:
        weights_dir = check_path(weights_dir, "eval_weights", kind="dir")
    device = device or session.get("config", {}).get("device", "cpu")
    rows = test_trials(read_retrievals(out), session["bank_ids"])
    if len({r["image_id"] for r in rows}) < 2:
        raise ConfigError(
            f"{str(out)!r} has {len(rows)} scorable trial(s) (a decoded trial whose image is in "
            "the bank): evaluation needs trials of at least 2 images"
        )
    log(f"scoring {len(rows)} test trials of {str(out)!r}")
    model, bank = session_decoder(session, device)
    trial_ids = np.array([int(r["image_id"]) for r in rows])
    averaged = repetition_average(_trial_array(out, rows, "response"), trial_ids)
    result: dict = {
        "session": str(out),
        "dataset": session.get("dataset_name"),
        "simulated": bool(session.get("simulated")),
        "checkpoint": session.get("checkpoint"),
        "trials": len(rows),
        "images": len({r["image_id"] for r in rows}),
        "retrieval": retrieval_section(
            out, rows, averaged, model, bank, sample_size=sample_size, draws=draws, seed=seed
        ),
        "reconstruction": recon_section(
            out,
            session,
            rows,
            averaged,
            weights_dir=weights_dir,
            device=device,
            size=recon_size,
            seed=seed,
            log=log,
        ),
        "eval_weights": None if weights_dir is None else str(weights_dir),
    }
    result["seconds"] = round(time.perf_counter() - t0, 2)
    table = markdown_table(result)
    write_json(out / EVAL_JSON, result)
    write_text(out / EVAL_MARKDOWN, table)
    log(table)
    log(f"written: {out / EVAL_JSON}, {out / EVAL_MARKDOWN}")
    return result
