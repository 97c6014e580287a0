"""Forward time of MindEye presets (random weights, batch 1) on the available device.

    python benchmarks/bench_forward.py                        # mindeye1-subj01 and demo
    python benchmarks/bench_forward.py --preset mindeye1-subj01 --dtype bf16 --device cuda

Prints the median and p95 of the forward pass (backbone + projector) and, for the bank step,
the cosine top-k over a bank of the given size, searched on the device as the decode stage
does (on a GPU also on the host, with the ratio host / device).  Timings are figures, not
assertions.
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
    on_device = _search_ms(bank.search_on(device), proj, device, repeats)
    text = f"bank top-5 over {bank_size} on {device} p50 {on_device:6.2f} ms"
    if device != "cpu":
        on_host = _search_ms(bank.search_on("cpu"), proj, "cpu", repeats)
        text += f", on the host {on_host:6.2f} ms ({on_host / on_device:5.1f}x)"
    counts = param_counts(preset)
    q = sorted(times)
    print(
        f"{preset:<17s} {counts['backbone'] / 1e6:8.1f} M backbone  {device:<6s} {dtype:<5s} "
        f"forward p50 {statistics.median(times):8.2f} ms  p95 {q[int(0.95 * (len(q) - 1))]:8.2f} ms"
        f"  | {text}  | build {build_s:.1f} s"
    )
    del model


def _search_ms(bank, proj: torch.Tensor, device: str, repeats: int) -> float:
    """Median ms of a top-5 search of ``proj`` (the forward's output, where it is), the
    first (which normalises the bank where it searches) left out."""
    ms = []
    for _ in range(repeats + 1):
        _sync(device)
        t = time.perf_counter()
        bank.retrieve(proj.float(), k=5)
        _sync(device)
        ms.append(1e3 * (time.perf_counter() - t))
    return statistics.median(ms[1:])


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
