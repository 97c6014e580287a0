"""Preparing a ``mindeye-rt stream`` session: the dataset, the models (trained on first use),
the session folder and each stage's spec.

:func:`prepare` runs these steps in order and returns a :class:`PreparedSession`; the launcher
(:func:`realtime.pipeline.run_stream`) starts the stages from its specs.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mindeye_models.recon_options import TINY_RANDOM_GENERATOR, ReconOptions
from realtime.config import StreamConfig
from realtime.finetune_options import add_finetune_specs
from realtime.session_layout import session_labels
from replay_data.home import data_home
from rt_base.atomic import write_json
from rt_base.checks import check_path
from rt_base.errors import ConfigError


@contextlib.contextmanager
def training_threads():
    """Train with one core fewer than the machine has (at least one).

    On a machine whose cores are all busy, a multi-threaded op waits for a scheduler slice
    whenever one of its threads is descheduled; on 2 shared cores that made demo training
    epochs 3-8x slower with 2 threads than with 1.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(before, (os.cpu_count() or 2) - 1)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class PreparedSession:
    """A session ready to launch: what :func:`prepare` made and wrote.

    Attributes
    ----------
    out : Path
        The session folder (``config.json`` and ``stages/NAME.json`` are written).
    specs : dict of str to dict
        Each stage's JSON-able spec (its options and addresses), by stage name.
    session : dict
        The session record written to ``out / "config.json"``: the config, the dataset, the
        checkpoint, the reconstruction mode (``recon``) and bundle, the bank ids, the runs and
        the addresses.
    dataset : ReplayDataset
        The dataset replayed.
    """

    out: Path
    specs: dict[str, dict[str, Any]]
    session: dict[str, Any]
    dataset: Any


def prepare(cfg: StreamConfig, log=print) -> PreparedSession:
    """Resolve the dataset and the models (trained on first use), create the session folder
    and write the stage specs.

    Raises
    ------
    ConfigError, WeightsError
        A missing checkpoint or generator, or reconstruction models that do not fit; checked
        before anything is trained.
    """
    _check_inputs(cfg)
    ds = _open_dataset(cfg, log)
    bad = [r for r in ([cfg.run] if cfg.run else cfg.runs) if r not in ds.runs]
    if bad:
        raise ConfigError(f"'runs' must name runs of {ds.meta.name!r} {list(ds.runs)}, got {bad}")
    checkpoint = _checkpoint(cfg, ds, log)
    options, bundle = _recon_models(cfg, ds, checkpoint, log)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(cfg.out) if cfg.out else data_home() / "sessions" / f"{stamp}_{ds.meta.name}"
    out.mkdir(parents=True, exist_ok=True)
    runs = [cfg.run] if cfg.run else (cfg.runs or list(ds.runs))
    bank_ids = _bank_ids(ds, runs)
    specs = _stage_specs(cfg, ds, checkpoint, runs, bank_ids, out)
    labels = session_labels(cfg.subject, cfg.session, ds.meta.subject).to_dict()
    specs["source"].update(record_dir=str(out), record_labels=labels)  # the received volumes
    specs["recorder"]["record_labels"] = labels  # the BIDS record (realtime.session_layout)
    add_finetune_specs(cfg, ds, runs, specs, out)  # --finetune between-runs
    if bundle is not None:
        specs["decode"].update(emit_latents=True, out_addr=cfg.addresses()["reconstruct"])
        specs["reconstruct"] = _reconstruct_spec(cfg, options, bundle)
    for spec in specs.values():
        spec["telemetry_addr"] = cfg.addresses()["telemetry_in"]
    session = {
        "config": cfg.to_dict(),
        "dataset": str(ds.root),
        "dataset_name": ds.meta.name,
        "simulated": bool(ds.meta.simulated),
        "checkpoint": str(checkpoint),
        "recon": cfg.recon_mode,
        "recon_bundle": str(bundle) if bundle is not None else None,
        "bank_ids": bank_ids,
        "cache_dir": str(data_home() / "cache"),
        "runs": runs,
        "record_labels": labels,
        "input": "scanner" if cfg.scanner else "replay",
        "scanner": cfg.scanner,
        "motion": specs["preprocess"]["motion"],
        "fd_threshold": cfg.fd_threshold,
        "addresses": cfg.addresses(),
        "started": time.time(),
    }
    write_json(out / "config.json", session)
    (out / "stages").mkdir(exist_ok=True)
    for name, spec in specs.items():
        write_json(out / "stages" / f"{name}.json", spec)
    return PreparedSession(out=out, specs=specs, session=session, dataset=ds)


def _check_inputs(cfg: StreamConfig) -> None:
    """The scanner folder and the motion reference, checked before anything is trained."""
    from realtime.stages.preprocess_motion import parse_reference

    if cfg.scanner:
        check_path(
            cfg.scanner,
            "scanner",
            kind="dir",
            remedy="create the folder the scanner exports into, or mount its share there",
        )
    parse_reference(cfg.motion_ref)


def _open_dataset(cfg: StreamConfig, log):
    """The replay dataset: a folder, or a name resolved in the data home (made on first use)."""
    from replay_data.dataset_reader import ReplayDataset
    from replay_data.resolve import resolve_replay

    path = Path(cfg.replay).expanduser()
    if path.is_dir():
        return ReplayDataset.open(path)
    return resolve_replay(cfg.replay, progress=not cfg.quiet, log=log)


def _checkpoint(cfg: StreamConfig, ds, log) -> Path:
    """``--checkpoint`` if given (it must exist), else the cached model of the preset."""
    if cfg.checkpoint:
        checkpoint = Path(cfg.checkpoint).expanduser()
        if not checkpoint.is_file():
            raise ConfigError(
                f"'checkpoint' must be an existing MindEye checkpoint (.safetensors), got "
                f"{cfg.checkpoint!r}: train one with `mindeye-rt train`, or leave --checkpoint "
                "out to use the cached demo model"
            )
        return checkpoint
    from mindeye_models.model_cache import ensure_model

    with training_threads():
        return ensure_model(
            ds,
            models_dir=data_home() / "models",
            preset=cfg.preset,
            epochs=cfg.train_epochs,
            progress=not cfg.quiet,
            log=log,
        )


def _recon_models(cfg: StreamConfig, ds, checkpoint: Path, log):
    """The reconstruction options and bundle path, or ``(None, None)`` for ``--recon none``.

    A ``lowlevel`` session needs (and trains on first use) only the bundle's low-level part;
    ``full`` also needs the diffusion prior.
    """
    mode = cfg.recon_mode
    if mode == "none":
        return None, None
    from mindeye_models.recon_bundle import check_bundle_for
    from mindeye_models.recon_training import ensure_recon_models

    options = ReconOptions(  # checks the device and options before any training
        mode=mode,
        steps=cfg.recon_steps,
        strength=cfg.recon_strength,
        prior_steps=cfg.prior_steps,
        seed=cfg.recon_seed,
        device=cfg.reconstruct_device,
        dtype=cfg.recon_dtype,
    )
    _check_generator(cfg)
    full = mode == "full"
    if cfg.recon_models:
        parts = ("lowlevel", "prior") if full else ("lowlevel",)
        return options, check_bundle_for(cfg.recon_models, checkpoint, parts=parts)
    with training_threads():
        bundle = ensure_recon_models(
            ds,
            checkpoint,
            models_dir=data_home() / "models",
            with_prior=full,
            vae=cfg.vae,
            clip_weights=cfg.clip_weights,
            cache_dir=data_home() / "cache",
            progress=not cfg.quiet,
            log=log,
        )
    return options, bundle


def _bank_ids(ds, runs: list[str]) -> list[int]:
    """The retrieval candidates: the test images of the replayed runs (all their images if
    they show no test image)."""
    events = [e for r in runs for e in ds.events(r)]
    bank_ids = sorted({int(e.image_id) for e in events if e.split == "test"})
    return bank_ids or sorted({int(e.image_id) for e in events})


def motion_mode(cfg: StreamConfig, ds) -> str:
    """``--motion``, with ``auto`` resolved: ``correct`` wherever volumes can move (a scanner,
    real data, a simulated subject that moves), ``none`` for a simulated subject that holds
    still (nothing to correct; correcting would only smooth its data)."""
    if cfg.motion != "auto":
        return cfg.motion
    still = bool(ds.meta.simulated) and ds.meta.params.get("motion", "none") == "none"
    return "none" if still and not cfg.scanner else "correct"


def _source_spec(cfg: StreamConfig, ds, runs, out: Path) -> dict:
    """The replay source's spec, or the scanner source's with ``--scanner``."""
    addr = cfg.addresses()
    common = {
        "dataset": str(ds.root),
        "runs": runs,
        "max_volumes": cfg.max_volumes,
        "out_addr": addr["preprocess"],
        "control_addr": addr["control"],
    }
    if cfg.markers:  # trial events from the stimulus program (realtime.stages.marker_events)
        common.update(markers=cfg.markers, record_dir=str(out))
    if not cfg.scanner:
        return {**common, "speed": cfg.speed}
    return {
        **common,
        "folder": str(Path(cfg.scanner).expanduser()),
        "run_volumes": cfg.run_volumes,
        "poll": cfg.scanner_poll,
        "idle_timeout_s": cfg.scanner_idle,
        "record_dir": str(out),
    }


def _stage_specs(cfg: StreamConfig, ds, checkpoint: Path, runs, bank_ids, out: Path) -> dict:
    """The specs of the retrieval path (source to recorder), without telemetry."""
    addr = cfg.addresses()
    brain = ds.root / "brain_mask.nii.gz"
    return {
        "source": _source_spec(cfg, ds, runs, out),
        "preprocess": {
            "mask": str(ds.root / "roi_mask.nii.gz"),
            "motion": motion_mode(cfg, ds),
            "motion_ref": cfg.motion_ref,
            "brain_mask": str(brain) if brain.is_file() else None,
            "motion_device": cfg.device,
            "fd_threshold": cfg.fd_threshold,
            # kept for a restarted process (realtime.stages.motion_keep)
            "motion_state_dir": str(out / "logs" / "motion"),
            "in_addr": addr["preprocess"],
            "out_addr": addr["estimate"],
        },
        "estimate": {
            "n_voxels": int(ds.meta.n_voxels),
            "decode_delay": cfg.decode_delay,
            "in_addr": addr["estimate"],
            "out_addr": addr["decode"],
        },
        "decode": {
            "checkpoint": str(checkpoint),
            "dataset": str(ds.root),
            "bank_ids": bank_ids,
            "device": cfg.device,
            "top_k": cfg.top_k,
            "precision": cfg.decode_precision,
            "clip_weights": cfg.clip_weights,
            "cache_dir": str(data_home() / "cache"),
            "emit_latents": False,
            "in_addr": addr["decode"],
            "out_addr": addr["recorder"],
        },
        "recorder": {
            "out_dir": str(out),
            "print_trials": not cfg.quiet,
            "in_addr": addr["recorder"],
        },
    }


def _reconstruct_spec(cfg: StreamConfig, options, bundle: Path) -> dict:
    """The reconstruct stage's spec: the bundle, the generator (full mode) and the options."""
    addr = cfg.addresses()
    return {
        "bundle": str(bundle),
        "generator": cfg.generator if options.mode == "full" else None,
        **options.to_dict(),
        "in_addr": addr["reconstruct"],
        "out_addr": addr["recorder"],
    }


def _check_generator(cfg: StreamConfig) -> None:
    """Refuse a missing or incomplete generator snapshot before anything is trained."""
    if cfg.recon_mode != "full" or cfg.generator == TINY_RANDOM_GENERATOR:
        return
    from mindeye_models.unclip_pipeline import check_snapshot

    check_snapshot(cfg.generator)
