"""The dataset and model commands: ``simulate`` (a simulated subject), ``train`` (MindEye and its
reconstruction models on a dataset's training responses) and ``model-info`` (parameter counts of
a preset).  Each imports what it runs when it runs, so that ``mindeye-rt --help`` starts light."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from replay_data.simulation_config import MOTION_KINDS, PRESETS


def add_simulate(sub) -> None:
    p = sub.add_parser("simulate", help="generate a simulated subject as a replay dataset")
    p.add_argument("--name", default="subj01", help="dataset name (default subj01)")
    p.add_argument(
        "--preset",
        default="subj01",
        choices=sorted(PRESETS),
        help="preset (default subj01; *-moving: the same subject with head motion)",
    )
    p.add_argument(
        "--motion", choices=MOTION_KINDS, help="head motion of the test runs (default: preset's)"
    )
    p.add_argument("--seed", type=int, help="random seed (default: the preset's)")
    p.add_argument("--snr", type=float, help="signal-to-noise ratio (default: the preset's)")
    p.add_argument("--train-trials", type=int, dest="n_train_trials", help="training trials")
    p.add_argument(
        "--test-images", type=int, dest="n_test_images", help="test images (each shown 3x)"
    )
    p.add_argument("--out", help="folder (default DATA_HOME/datasets/NAME)")
    p.add_argument("--force", action="store_true", help="overwrite an existing dataset")


def cmd_simulate(args) -> int:
    import dataclasses

    from replay_data.home import data_home
    from replay_data.simulate import simulate_subject

    base = PRESETS[args.preset]()
    changes = {
        k: getattr(args, k)
        for k in ("seed", "snr", "n_train_trials", "n_test_images", "motion")
        if getattr(args, k) is not None
    }
    cfg = dataclasses.replace(base, name=args.name, **changes)
    out = Path(args.out) if args.out else data_home() / "datasets" / args.name
    if (out / "dataset.json").exists() and not args.force:
        print(f"{out} already holds a dataset; pass --force to overwrite it", file=sys.stderr)
        return 2
    ds = simulate_subject(out, cfg, progress=True, overwrite=args.force)
    print(f"simulated subject {cfg.name!r} written to {ds.root}")
    return 0


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train MindEye on a replay dataset's training responses")
    p.add_argument("--replay", default="subj01", help="dataset name or path (default subj01)")
    p.add_argument("--preset", default="demo", help="model preset (default demo)")
    p.add_argument("--epochs", type=int, help="epochs (default: the preset's)")
    p.add_argument("--out", help="checkpoint path (default: the data home's model cache)")
    p.add_argument("--force", action="store_true", help="retrain even if a cached model exists")
    p.add_argument(
        "--prior",
        choices=["after", "joint", "none"],
        default="after",
        help="diffusion prior (reconstruction): trained after the backbone on its frozen output "
        "(default), jointly with it (MindEye's loss x30), or not at all",
    )
    p.add_argument("--vae", help="local diffusers AutoencoderKL directory for the low-level head")


def cmd_train(args) -> int:
    from mindeye_models.model_cache import ensure_model
    from realtime.preparation import training_threads
    from replay_data.home import data_home
    from replay_data.resolve import resolve_replay

    ds = resolve_replay(args.replay)
    models = data_home() / "models"
    with training_threads():
        path = ensure_model(
            ds,
            models_dir=models,
            preset=args.preset,
            epochs=args.epochs,
            force=args.force,
            out=args.out,
            joint_prior=args.prior == "joint",
            cache_dir=data_home() / "cache",
            log=print,
        )
        print(f"checkpoint: {path}")
        if args.prior != "none":
            from mindeye_models.recon_training import ensure_recon_models

            # every part, so the models serve `stream --recon full` as well as lowlevel
            bundle = ensure_recon_models(
                ds,
                path,
                models_dir=models,
                with_prior=True,
                vae=args.vae,
                cache_dir=data_home() / "cache",
                force=args.force,
                log=print,
            )
            print(f"reconstruction models: {bundle}")
    return 0


def add_model_info(sub) -> None:
    p = sub.add_parser("model-info", help="parameter counts of a model preset, as JSON")
    p.add_argument(
        "--preset",
        default="mindeye1-subj01",
        help="a MindEye1, MindEye2, prior or low-level preset (default mindeye1-subj01; e.g. "
        "mindeye2-subj01, demo; an unknown name is refused with the list of all)",
    )


def cmd_model_info(args) -> int:
    from mindeye_models.info import param_counts

    print(json.dumps(param_counts(args.preset), indent=2))
    return 0
