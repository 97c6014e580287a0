"""Pipeline stages and the factory that builds one from a JSON-able spec."""

from __future__ import annotations

from typing import Any

from realtime.stages.base import Stage
from rt_base.errors import ConfigError
from rt_base.names import STAGE_NAMES

#: the reconstruct stage's per-trial options (fields of mindeye_models.recon.ReconOptions)
RECON_OPTION_NAMES = (
    "mode",
    "steps",
    "strength",
    "prior_steps",
    "prior_guidance",
    "seed",
    "device",
    "dtype",
)


_LINK_KEYS = ("in_addr", "out_addr", "telemetry_addr", "exit_on_end")

#: the options each stage takes (besides its links)
OPTIONS: dict[str, tuple[str, ...]] = {
    "source": ("dataset", "runs", "speed", "max_volumes", "drop_volumes", "control_addr"),
    "preprocess": ("mask",),
    "estimate": ("n_voxels", "decode_delay", "window"),
    "decode": (
        "checkpoint",
        "dataset",
        "bank_ids",
        "device",
        "clip_weights",
        "cache_dir",
        "top_k",
        "emit_latents",
    ),
    "reconstruct": (
        "bundle",
        "generator",
        "warn_backlog",
        "warn_seconds",
        *RECON_OPTION_NAMES,
    ),
    "recorder": ("out_dir", "print_trials"),
}


def build_stage(name: str, spec: dict[str, Any]) -> Stage:
    """Build stage ``name`` from ``spec`` (its addresses and options, all JSON values).

    The decode stage loads its model checkpoint and image bank here, before it starts.
    """
    if name not in OPTIONS:
        raise ConfigError(f"stage name must be one of {list(STAGE_NAMES)}, got {name!r}")
    spec = dict(spec)
    links = {k: spec.pop(k) for k in _LINK_KEYS if k in spec}
    unknown = sorted(set(spec) - set(OPTIONS[name]))
    if unknown:
        raise ConfigError(
            f"stage {name!r} does not take option(s) {unknown}; it takes {list(OPTIONS[name])}"
        )

    def take(key: str, default: Any = ConfigError) -> Any:
        if key in spec:
            return spec.pop(key)
        if default is ConfigError:
            raise ConfigError(f"stage {name!r} needs option {key!r} (--set {key}=VALUE)")
        return default

    if name == "source":
        from realtime.stages.source import ReplaySource

        stage = ReplaySource(
            take("dataset"),
            runs=take("runs", None) or None,
            speed=take("speed", 1.0),
            max_volumes=take("max_volumes", None),
            drop_volumes=[tuple(x) for x in take("drop_volumes", [])],
            control_addr=take("control_addr", None),
            **links,
        )
    elif name == "preprocess":
        from realtime.stages.preprocess import PreprocessStage

        stage = PreprocessStage(take("mask"), **links)
    elif name == "estimate":
        from realtime.stages.estimate import EstimateStage

        stage = EstimateStage(
            take("n_voxels"),
            decode_delay_s=take("decode_delay", 8.0),
            window_s=take("window", None),
            **links,
        )
    elif name == "decode":
        from realtime.models import load_decoder
        from realtime.stages.decode import DecodeStage

        model, bank = load_decoder(
            take("checkpoint"),
            take("dataset"),
            take("bank_ids"),
            device=take("device", "cpu"),
            clip_weights=take("clip_weights", None),
            cache_dir=take("cache_dir", None),
        )
        stage = DecodeStage(
            model,
            bank,
            top_k=take("top_k", 5),
            device=model_device(model),
            emit_latents=take("emit_latents", False),
            **links,
        )
    elif name == "reconstruct":
        from mindeye_models.recon import ReconOptions, Reconstructor, load_bundle, load_generator
        from realtime.stages.reconstruct import ReconstructStage

        options = ReconOptions(**{k: spec.pop(k) for k in RECON_OPTION_NAMES if k in spec})
        bundle = load_bundle(take("bundle"), device=options.device)
        generator = take("generator", None)
        pipe = None
        if options.mode == "full":
            if not generator:
                raise ConfigError(
                    "recon mode 'full' needs a generator: --generator DIR (a local Stable unCLIP "
                    "snapshot) or --generator tiny-random (random weights, no image content)"
                )
            pipe = load_generator(
                generator,
                embed_dim=bundle.token_shape[1],
                device=options.device,
                dtype=options.dtype,
            )
        stage = ReconstructStage(
            Reconstructor(bundle, options, pipe),
            warn_backlog=take("warn_backlog", 2),
            warn_seconds=take("warn_seconds", 1.0),
            generator=generator if options.mode == "full" else None,
            **links,
        )
    elif name == "recorder":
        from realtime.stages.recorder import RecorderStage

        stage = RecorderStage(take("out_dir"), print_trials=take("print_trials", True), **links)
    else:  # pragma: no cover - OPTIONS and this chain name the same stages
        raise AssertionError(name)
    return stage


def model_device(model) -> str:
    return str(next(model.parameters()).device)
