"""The decode stage's forward pass, float32 against int8, on a recorded session's responses.

    mindeye-rt stream --replay subj01 --headless --speed 0 --recon none --out /tmp/s
    python benchmarks/bench_decode.py /tmp/s

Both precisions run in this process on the same responses (the ``trials/NNNN_response.npy``
the session decoded), alternating trial by trial so that machine load falls on both alike, with
one torch thread as each stage process has.  Prints ms per trial (forward pass and bank search,
as the stage times it), the ratio, and how the retrievals compare: top-1 accuracy of each, the
share of trials whose top-1 / top-k ids are the same, and the largest score difference.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("session", help="a session folder (mindeye-rt stream --out)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="timed passes over the trials")
    args = ap.parse_args()

    import torch

    from mindeye_models.decode_precision import PRECISIONS, for_inference
    from realtime.models import load_decoder

    torch.set_num_threads(args.threads)
    session = Path(args.session)
    cfg = json.loads((session / "config.json").read_text())
    model, bank = load_decoder(
        cfg["checkpoint"], cfg["dataset"], cfg["bank_ids"], cache_dir=cfg.get("cache_dir")
    )
    with (session / "retrievals.tsv").open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    responses = [np.load(session / "trials" / f"{int(r['n']):04d}_response.npy") for r in rows]
    truth = [int(r["image_id"]) for r in rows]
    models = {p: for_inference(model, p) for p in PRECISIONS}
    k = int(cfg["config"].get("top_k", 5))

    def decode(m, response):
        x = torch.from_numpy(np.array(response, np.float32, copy=True))[None]
        with torch.inference_mode():
            _, projected = m(x)
        ids, scores = bank.retrieve(projected[:1].float().cpu(), k=len(bank))
        return np.asarray(ids[0]), np.asarray(scores[0])

    for m in models.values():  # warm-up, as the stage does
        for r in responses[:5]:
            decode(m, r)
    times = {p: [] for p in models}
    out = {p: [] for p in models}
    for rep in range(args.repeats):
        for r in responses:
            for p, m in models.items():
                start = time.perf_counter()
                result = decode(m, r)
                times[p].append(1e3 * (time.perf_counter() - start))
                if rep == 0:
                    out[p].append(result)

    print(f"=== decode forward pass: {len(responses)} trials of {session} ===")
    print(f"model {cfg['checkpoint']}, bank {len(bank)} images, {args.threads} thread(s)")
    for p in models:
        t = np.asarray(times[p])
        print(f"{p:>5}: {np.median(t):6.2f} ms p50, {np.percentile(t, 95):6.2f} ms p95")
    ratio = np.median(times["fp32"]) / np.median(times["int8"])
    print(f"int8 is {ratio:.2f}x faster than fp32 (p50)")
    scored = [i for i, t in enumerate(truth) if t in set(int(b) for b in cfg["bank_ids"])]
    for p in models:
        hits = sum(int(out[p][i][0][0]) == truth[i] for i in scored)
        print(f"{p:>5}: top-1 {hits}/{len(scored)} = {hits / len(scored):.3f}")
    pairs = list(zip(out["fp32"], out["int8"], strict=True))
    same1 = sum(int(a[0][0]) == int(b[0][0]) for a, b in pairs)
    samek = sum(list(a[0][:k]) == list(b[0][:k]) for a, b in pairs)
    diff = max(float(np.abs(np.sort(a[1]) - np.sort(b[1])).max()) for a, b in pairs)
    n = len(responses)
    print(
        f"same top-1: {same1}/{n}; same top-{k} in order: {samek}/{n}; max |score diff| {diff:.4f}"
    )


if __name__ == "__main__":
    main()
