"""Per-trial reconstruction latency of each reconstruction mode (random weights, batch 1).

    python benchmarks/bench_recon.py                          # demo sizes, both modes, 1 2 4 steps
    python benchmarks/bench_recon.py --size paper --device cuda --dtype float16
    python benchmarks/bench_recon.py --size paper --modes lowlevel --trials 3 --json recon.json

One trial is what the reconstruct stage does per trial:

* ``lowlevel``: the low-level head (voxels -> autoencoder latents), then the autoencoder's
  decoder -> the blurry image (uint8, on the host);
* ``full``: ``lowlevel``, then the diffusion prior samples CLIP image tokens from the backbone's
  tokens (``--prior-steps``), and the unCLIP generator runs img2img from the blurry image with
  the class token as image embedding (``--steps`` sampler steps at strength 0.85, i.e. about
  0.85 x steps UNet evaluations, plus the VAE encode of the blurry image and the final decode).

Sizes (all weights random, nothing is downloaded):

* ``demo``: "small" prior (17 x 128 tokens), demo head (15,724 voxels -> 4 x 8 x 8, hidden 512)
  with the tiny autoencoder (64 px), tiny unCLIP pipeline (128-d embeddings, 64 px);
* ``paper``: the 257 x 768 prior, MindEye1's low-level head (15,724 voxels -> 4 x 64 x 64) with
  the Stable Diffusion VAE (512 px), and Stable unCLIP 2.1 small at its real size (870 M UNet,
  768 px) -- see ``benchmarks/unclip_configs.py``.

As in the reconstruct stage, the prior, the low-level head and its autoencoder run in float32
(``--prior-head-dtype``) and the generator in ``--dtype``.  Prints p50/p95 per trial, the
per-part breakdown (p50) and how the trial compares with NSD's 1.6 s TR (trials per TR at the
p50: >= 1 keeps up with one trial per TR).  Timings are figures, not assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

TR_S = 1.6  # NSD's repetition time
STRENGTH = 0.85  # MindEye's img2img strength from the blurry image
MODES = ("lowlevel", "full")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
N_VOXELS = 15724  # NSD subject 1, nsdgeneral


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _count(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


@dataclass
class Stack:
    """The models of one size, on the device."""

    size: str
    device: torch.device
    dtype: torch.dtype  # the generator's
    small_dtype: torch.dtype  # the prior's, the head's and its autoencoder's
    head: Any
    autoencoder: Any  # .decode_latents(latents) -> (B, S, S, 3) uint8
    prior: Any = None
    pipe: Any = None
    params: dict[str, int] = field(default_factory=dict)
    unet_calls: int = 0

    def _count_unet_call(self, *_: Any) -> None:
        self.unet_calls += 1


def build_stack(
    size: str,
    device: torch.device,
    dtype: torch.dtype,
    small_dtype: torch.dtype,
    *,
    full: bool,
    seed: int = 0,
) -> Stack:
    """Build the models of ``size`` (``demo`` or ``paper``); the prior and the generator only
    when ``full``."""
    from mindeye_models.autoencoders import (
        AutoencoderConfig,
        DiffusersAutoencoder,
        TinyAutoencoder,
    )
    from mindeye_models.lowlevel import LowLevelConfig, LowLevelHead
    from mindeye_models.prior import DiffusionPrior, get_prior_preset

    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        if size == "demo":
            head = LowLevelHead(LowLevelConfig(N_VOXELS, (4, 8, 8), hidden=512))
            autoencoder = TinyAutoencoder(AutoencoderConfig())
            for m in (head, autoencoder):
                m.to(device=device, dtype=small_dtype).eval()
            ae_params = _count(autoencoder)
            prior_preset = "small"
        else:
            import unclip_configs as uc  # a sibling of this script

            head = uc.build_paper_lowlevel_head(
                n_voxels=N_VOXELS, device=device, dtype=small_dtype, seed=seed
            )
            vae = uc.build_sd_vae(
                device=device, dtype=small_dtype, seed=seed + 1, sample_size=uc.LOWLEVEL_IMAGE_SIZE
            )
            autoencoder = DiffusersAutoencoder(vae, image_size=uc.LOWLEVEL_IMAGE_SIZE)
            ae_params = _count(vae)
            prior_preset = "paper"
        stack = Stack(size, device, dtype, small_dtype, head, autoencoder)
        stack.params = {"lowlevel_head": _count(head), "autoencoder": ae_params}
        if full:
            stack.prior = DiffusionPrior(get_prior_preset(prior_preset))
            stack.prior.to(device=device, dtype=small_dtype).eval()
            embed_dim = stack.prior.config.token_dim
            if size == "demo":
                from mindeye_models.unclip_pipeline import build_tiny_unclip_pipeline

                pipe = build_tiny_unclip_pipeline(seed=seed, embed_dim=embed_dim, image_size=64)
                pipe = pipe.to(device)
                for part in pipe.components.values():
                    if isinstance(part, torch.nn.Module) and dtype != torch.float32:
                        torch.nn.Module.to(part, dtype)  # no diffusers warning (nothing to keep)
            else:
                # one SD VAE for both paths when they run in the same precision
                shared = autoencoder.vae if dtype == small_dtype else None
                pipe = uc.build_unclip_small_pipeline(
                    device=device, dtype=dtype, seed=seed + 2, vae=shared
                )
            stack.pipe = pipe
            stack.pipe.unet.register_forward_pre_hook(stack._count_unet_call)
            stack.params.update(
                prior=_count(stack.prior),
                unet=_count(pipe.unet),
                vae=_count(pipe.vae),
                text_encoder=_count(pipe.text_encoder),
            )
    finally:
        torch.random.set_rng_state(gen_state)
    return stack


def run_trial(
    stack: Stack,
    mode: str,
    voxels: torch.Tensor,
    tokens: torch.Tensor,
    *,
    steps: int,
    prior_steps: int,
    prior_guidance: float,
    guidance: float,
    seed: int,
) -> dict[str, float]:
    """One trial; returns milliseconds per part (``lowlevel``, and ``prior``, ``generator`` in
    ``full`` mode) and ``total``."""
    from mindeye_models.generator import reconstruct

    dev = stack.device
    _sync(dev)
    t0 = time.perf_counter()
    blurry = stack.autoencoder.decode_latents(stack.head(voxels))  # uint8 (1, S, S, 3), host
    _sync(dev)
    t1 = time.perf_counter()
    ms = {"lowlevel": 1e3 * (t1 - t0)}
    if mode == "full":
        g = torch.Generator().manual_seed(seed)
        # the prior draws its noise in float32: run a half-precision prior under autocast
        half = stack.small_dtype != torch.float32
        amp = (
            torch.autocast(dev.type, dtype=stack.small_dtype) if half else contextlib.nullcontext()
        )
        with amp:
            clip = stack.prior.sample(
                tokens, steps=prior_steps, guidance=prior_guidance, generator=g
            )
        _sync(dev)
        t2 = time.perf_counter()
        reconstruct(
            stack.pipe,
            clip[:, 0],
            blurry[0],
            steps=steps,
            strength=STRENGTH,
            guidance=guidance,
            seed=seed,
        )
        _sync(dev)
        t3 = time.perf_counter()
        ms.update(prior=1e3 * (t2 - t1), generator=1e3 * (t3 - t2))
    ms["total"] = sum(ms.values())
    return ms


def _stats(values: list[float]) -> dict[str, float]:
    q = sorted(values)
    return {
        "p50": statistics.median(q),
        "p95": q[int(0.95 * (len(q) - 1))],
        "mean": statistics.fmean(q),
        "min": q[0],
        "max": q[-1],
    }


def bench_case(
    stack: Stack,
    mode: str,
    steps: int | None,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Warm-up then ``args.trials`` timed trials of one mode (and step count)."""
    dev = stack.device
    g = torch.Generator().manual_seed(0)
    n = args.warmup + args.trials
    voxels = torch.randn(n, N_VOXELS, generator=g).to(dev, stack.small_dtype)
    tokens = None
    if mode == "full":
        shape = stack.prior.config.token_shape
        tokens = torch.randn(n, *shape, generator=g).to(dev, stack.small_dtype)
    times: list[dict[str, float]] = []
    unet_calls = []
    for i in range(n):
        stack.unet_calls = 0
        cpu0 = time.process_time()
        ms = run_trial(
            stack,
            mode,
            voxels[i : i + 1],
            None if tokens is None else tokens[i : i + 1],
            steps=steps or 1,
            prior_steps=args.prior_steps,
            prior_guidance=args.prior_guidance,
            guidance=args.guidance,
            seed=i,
        )
        ms["process_cpu"] = 1e3 * (time.process_time() - cpu0)
        if i >= args.warmup:  # warm-up excluded
            times.append(ms)
            unet_calls.append(stack.unet_calls)
    parts = [k for k in ("lowlevel", "prior", "generator") if k in times[0]]
    total = _stats([t["total"] for t in times])
    return {
        "mode": mode,
        "steps": steps,
        "unet_calls": unet_calls[0] if mode == "full" else 0,
        "prior_steps": args.prior_steps if mode == "full" else 0,
        "trials": args.trials,
        "total_ms": total,
        "parts_ms": {k: _stats([t[k] for t in times]) for k in parts},
        # CPU time of this process per trial (all threads): on a CPU run, a wall time well above
        # process_cpu_ms / threads means the machine was busy with other work
        "process_cpu_ms": _stats([t["process_cpu"] for t in times]),
        "tr_fraction": total["p50"] / (1e3 * TR_S),
        "trials_per_tr": 1e3 * TR_S / total["p50"],
    }


def _print_case(r: dict[str, Any]) -> None:
    p, t = r["parts_ms"], r["total_ms"]

    def part(key: str) -> str:
        return f"{p[key]['p50']:>11.1f}" if key in p else f"{'-':>11s}"

    steps = "-" if r["steps"] is None else str(r["steps"])
    unet = "-" if r["mode"] == "lowlevel" else str(r["unet_calls"])
    print(
        f"{r['mode']:<9s}{steps:>6s}{unet:>5s}{t['p50']:>11.1f}{t['p95']:>11.1f}  |"
        f"{part('lowlevel')}{part('prior')}{part('generator')}  |"
        f"{r['tr_fraction']:>8.3f}{r['trials_per_tr']:>10.2f}  |"
        f"{r['process_cpu_ms']['p50']:>11.1f}",
        flush=True,
    )


def _int_list(text: str, name: str, minimum: int, maximum: int) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{name} must be comma-separated integers such as 1,2,4, got {text!r}"
        ) from None
    if not values or any(not minimum <= v <= maximum for v in values):
        raise argparse.ArgumentTypeError(
            f"{name} must be integers in {minimum} .. {maximum}, got {text!r}"
        )
    return sorted(set(values))


def _modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if not modes or bad:
        raise argparse.ArgumentTypeError(
            f"--modes must be a comma-separated subset of {','.join(MODES)}, got {text!r}"
        )
    return [m for m in MODES if m in modes]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the options; bad values exit with a message (argparse's ``error``)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="demo", choices=["demo", "paper"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32", choices=list(DTYPES), help="of the generator")
    ap.add_argument(
        "--prior-head-dtype",
        default="float32",
        choices=list(DTYPES),
        help="of the prior, the low-level head and its autoencoder (the stage keeps float32)",
    )
    ap.add_argument("--modes", type=_modes, default=list(MODES), help="lowlevel,full")
    ap.add_argument(
        "--steps",
        type=lambda s: _int_list(s, "--steps", 1, 1000),
        default=[1, 2, 4],
        help="generator sampler steps, comma-separated (full mode)",
    )
    ap.add_argument("--prior-steps", type=int, default=10)
    ap.add_argument("--prior-guidance", type=float, default=1.0)
    ap.add_argument(
        "--guidance", type=float, default=1.0, help="unCLIP guidance (> 1 doubles the UNet work)"
    )
    ap.add_argument("--trials", type=int, default=10, help="timed trials per case")
    ap.add_argument("--warmup", type=int, default=1, help="untimed trials before each case")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (the stage runs with 1)")
    ap.add_argument("--seed", type=int, default=0, help="seeds the random weights")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    try:
        dev = torch.device(args.device)
    except (RuntimeError, TypeError):
        ap.error(f"--device must be a torch device such as cpu or cuda:0, got {args.device!r}")
    if dev.type not in ("cpu", "cuda"):
        ap.error(f"--device must be cpu or cuda[:N], got {args.device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        ap.error(f"--device {args.device} but torch sees no CUDA device here: use --device cpu")
    for opt in ("dtype", "prior_head_dtype"):
        if dev.type == "cpu" and getattr(args, opt) == "float16":
            ap.error(
                f"--{opt.replace('_', '-')} float16 is not supported on the CPU (many float16 "
                "kernels are missing there and the rest are far slower than float32): use "
                "float32 (or bfloat16) on the CPU, or float16 with --device cuda"
            )
    if not 1 <= args.prior_steps <= 100:
        ap.error(
            f"--prior-steps must be in 1 .. 100 (the prior's timesteps), got {args.prior_steps}"
        )
    for name in ("prior_guidance", "guidance"):
        value = getattr(args, name)
        if not math.isfinite(value) or value < 0:
            ap.error(f"--{name.replace('_', '-')} must be a finite number >= 0, got {value}")
    for name, low in (("trials", 1), ("warmup", 0), ("threads", 1), ("seed", 0)):
        if getattr(args, name) < low:
            ap.error(f"--{name} must be an integer >= {low}, got {getattr(args, name)}")
    args.device = str(dev)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns the figures (also written to ``--json``)."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    dtype, small_dtype = DTYPES[args.dtype], DTYPES[args.prior_head_dtype]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {dev}"
        + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else "")
        + f", generator {args.dtype}, prior/head {args.prior_head_dtype}, size {args.size}",
        flush=True,
    )
    t0 = time.perf_counter()
    stack = build_stack(
        args.size, dev, dtype, small_dtype, full="full" in args.modes, seed=args.seed
    )
    build_s = time.perf_counter() - t0
    print(
        "params: "
        + ", ".join(f"{k} {v / 1e6:.1f} M" for k, v in stack.params.items())
        + f"  | build {build_s:.1f} s",
        flush=True,
    )
    print(
        f"{'mode':<9s}{'steps':>6s}{'unet':>5s}{'p50 ms':>11s}{'p95 ms':>11s}  |"
        f"{'lowlevel':>11s}{'prior':>11s}{'generator':>11s}  |{'x TR':>8s}{'trials/TR':>10s}  |"
        f"{'CPU ms':>11s}"
    )
    cases = []
    with torch.inference_mode():
        for mode in args.modes:
            for steps in args.steps if mode == "full" else [None]:
                cases.append(bench_case(stack, mode, steps, args))
                _print_case(cases[-1])
    print(
        f"(per trial, batch 1; parts are p50 ms; x TR = p50 / {TR_S} s; "
        f"{args.trials} timed trials after {args.warmup} warm-up per case; CPU ms = p50 CPU "
        "time of this process, all threads)"
    )
    if dev.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(dev) / 2**20
    else:
        import resource

        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    result = {
        "benchmark": "bench_recon",
        "size": args.size,
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "dtype": args.dtype,
        "prior_head_dtype": args.prior_head_dtype,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "tr_s": TR_S,
        "strength": STRENGTH,
        "guidance": args.guidance,
        "prior_guidance": args.prior_guidance,
        "warmup": args.warmup,
        "build_s": build_s,
        "peak_memory_mb": peak_mb,
        "params": stack.params,
        "cases": cases,
    }
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"figures written to {path}")
    return result


if __name__ == "__main__":
    main()
