"""Forward time of MindEye presets (random weights, batch 1) on the available device.

    python benchmarks/bench_forward.py                        # mindeye1-subj01 and demo
    python benchmarks/bench_forward.py --preset mindeye1-subj01 --dtype bf16 --device cuda

Prints the median and p95 of the forward pass (backbone + projector) and, for the bank step,
the cosine top-k over a bank of the given size.  Timings are figures, not assertions.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench(preset: str, device: str, dtype: str, repeats: int, bank_size: int) -> None:
    from mindeye_models.bank import ImageBank
    from mindeye_models.info import param_counts
    from mindeye_models.model import MindEye
    from mindeye_models.presets import get_preset

    cfg = get_preset(preset)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = MindEye(cfg).eval()
    dt = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    model = model.to(device=device, dtype=dt)
    build_s = time.perf_counter() - t0
    x = torch.randn(1, cfg.n_voxels, device=device, dtype=dt)
    times = []
    with torch.inference_mode():
        for i in range(repeats + 3):
            _sync(device)
            t = time.perf_counter()
            _, proj = model(x)
            _sync(device)
            if i >= 3:  # warm-up excluded
                times.append(1e3 * (time.perf_counter() - t))
    bank = ImageBank(
        torch.arange(bank_size).numpy(), torch.randn(bank_size, *cfg.token_shape).numpy()
    )
    rt = []
    for _ in range(repeats):
        t = time.perf_counter()
        bank.retrieve(proj.float().cpu(), k=5)
        rt.append(1e3 * (time.perf_counter() - t))
    counts = param_counts(preset)
    q = sorted(times)
    print(
        f"{preset:<17s} {counts['backbone'] / 1e6:8.1f} M backbone  {device:<6s} {dtype:<5s} "
        f"forward p50 {statistics.median(times):8.2f} ms  p95 {q[int(0.95 * (len(q) - 1))]:8.2f} ms"
        f"  | bank top-5 over {bank_size} p50 {statistics.median(rt):6.2f} ms"
        f"  | build {build_s:.1f} s"
    )
    del model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", nargs="+", default=["mindeye1-subj01", "demo"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", nargs="+", default=None, help="fp32 fp16 bf16")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--bank-size", type=int, default=1000)
    ap.add_argument(
        "--threads", type=int, default=1, help="CPU threads (the pipeline runs each stage with 1)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtypes = args.dtype or (
        ["fp32", "fp16", "bf16"] if args.device.startswith("cuda") else ["fp32"]
    )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else "")
    )
    for preset in args.preset:
        for dtype in dtypes:
            bench(preset, args.device, dtype, args.repeats, args.bank_size)


if __name__ == "__main__":
    main()
