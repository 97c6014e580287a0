"""``mindeye-rt eval --delays 4:20:2 SESSION_DIR``: retrieval accuracy against decode delay.

Every trial of the session is estimated again at each decode delay (seconds after its onset)
by the session's own estimate stage (:class:`realtime.stages.estimate.EstimateStage`, built
from the spec the session ran it with, only ``decode_delay`` changed), fed the masked volumes
the recorder kept (``runs/RUN_raw.f32``: exactly what the stage received, after any motion
correction; the volumes it censored are flagged again) and the trial events in acquisition
order.  The stage's online estimator sees only the volumes acquired up to onset + delay, as it
would in real time.  Each delay's responses are
decoded by the session's model and scored: top-1 / top-5 against the session's bank (what the
decode stage reports) and MindEye's retrieval both ways on single and repetition-averaged
trials (:mod:`mindeye_models.eval_retrieval`).

The reference line is the session summary's offline accuracy: whole-run GLM betas after the
run (:func:`realtime.summary.offline_retrieval`).  Writes ``accuracy_vs_delay.tsv`` and
``accuracy_vs_delay.png`` into the session folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mindeye_models.eval_retrieval import DRAWS, SAMPLE_SIZE
from realtime.summary import load_run_data, read_events
from realtime.summary_motion import read_motion
from realtime.summary_quality import read_bad_volumes
from rt_base.checks import check_number
from rt_base.errors import ConfigError
from rt_wire.message import Message

DELAYS_TSV = "accuracy_vs_delay.tsv"
DELAYS_PNG = "accuracy_vs_delay.png"
COLUMNS = (
    "delay_s",
    "trials",
    "truncated",
    "ways",
    "top1",
    "top5",
    "image_retrieval",
    "image_retrieval_ci_low",
    "image_retrieval_ci_high",
    "brain_retrieval",
    "image_retrieval_averaged",
    "brain_retrieval_averaged",
)


def parse_delays(text: str) -> list[float]:
    """``START:STOP:STEP`` (STOP included), or a comma-separated list, in seconds.

    >>> parse_delays("4:10:2")
    [4.0, 6.0, 8.0, 10.0]
    """
    remedy = "give START:STOP:STEP (e.g. 4:20:2) or a list (e.g. 4,8,12) in seconds"
    parts = text.split(":") if ":" in text else [p for p in text.split(",") if p.strip()]
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise ConfigError(f"'delays' could not be read from {text!r}: {remedy}") from None
    if ":" not in text:
        delays = numbers
    elif len(numbers) != 3:
        raise ConfigError(f"'delays' could not be read from {text!r}: {remedy}")
    else:
        start, stop, step = numbers
        check_number(step, "delays step", minimum=0, strict_min=True, unit="seconds")
        if stop < start:
            raise ConfigError(f"'delays' must have START <= STOP, got {text!r}: {remedy}")
        n = int(np.floor((stop - start) / step + 1e-9)) + 1
        delays = [round(start + i * step, 6) for i in range(n)]
    if not delays:
        raise ConfigError(f"'delays' is empty: {remedy}")
    for d in delays:  # the estimate stage's own rule
        check_number(d, "delays", minimum=0, strict_min=True, maximum=30.0, unit="seconds")
    return delays


def estimate_spec(out: Path, session: dict) -> dict:
    """The options the session's estimate stage ran with (its links dropped)."""
    from realtime.stages import LINK_KEYS

    path = out / "stages" / "estimate.json"
    if not path.is_file():
        raise ConfigError(
            f"{str(path)!r} is missing: the session folder must hold the stage specs the "
            "session ran with (sessions recorded by `mindeye-rt stream` do)"
        )
    spec = json.loads(path.read_text())
    return {k: v for k, v in spec.items() if k not in LINK_KEYS}


def _run_messages(out: Path, run: str, tr: float, events: list[dict]) -> list[Message]:
    """The run as the estimate stage received it: ``run_start``, trials at their onsets and
    ``tr`` messages at their acquisition times (a trial first on a tie, as the source sends;
    with the motion and the ``bad_volume`` flag preprocess gave them), ``run_end``."""
    raw, index = load_run_data(out, run)
    motion = read_motion(out, run)
    moves = {} if motion is None else {int(i): (p, f) for i, p, f in zip(*motion, strict=True)}
    bad = {
        b["index"]: {"reasons": b["reasons"], "details": b["details"]}
        for b in read_bad_volumes(out, run)
    }
    timeline = [(float(e["onset"]), 0, e) for e in events]
    timeline += [(int(k) * tr, 1, row) for row, k in enumerate(index)]
    timeline.sort(key=lambda item: (item[0], item[1]))
    n_volumes = int(index.max()) + 1 if index.size else 0
    msgs = [Message("run_start", run=run, meta={"tr": tr, "n_volumes": n_volumes})]
    for _, kind, item in timeline:
        if kind == 0:
            meta = {k: item[k] for k in ("image_id", "repetition", "split")}
            meta.update(onset=float(item["onset"]), duration=float(item["duration"]))
            msgs.append(Message("trial", run=run, index=int(item["trial"]), meta=meta))
            continue
        k = int(index[item])
        meta = {}
        if k in moves:
            params, fd = moves[k]
            meta["motion"] = {"params": [float(v) for v in params], "fd": float(fd)}
        if k in bad:  # flagged by preprocess: the stage censors it again
            meta["bad_volume"] = bad[k]
        msgs.append(Message("tr", run=run, index=k, meta=meta, buffers={"raw": raw[item]}))
    msgs.append(Message("run_end", run=run, meta={"n_volumes": n_volumes}))
    return msgs


def reestimate(out: Path, session: dict, delay: float, tr: float) -> dict[tuple, tuple]:
    """Every trial's response at ``delay`` s: ``{(run, trial): (response (V,), truncated)}``."""
    from realtime.stages import build_stage

    stage = build_stage("estimate", {**estimate_spec(out, session), "decode_delay": delay})
    events = read_events(out)
    responses: dict[tuple, tuple] = {}
    for run in dict.fromkeys(e["run"] for e in events):
        if not (out / "runs" / f"{run}_raw.f32").is_file():
            continue  # stopped before its first volume: no trial of it was estimated
        run_events = [e for e in events if e["run"] == run]
        for msg in _run_messages(out, run, tr, run_events):
            for res in stage.handle(msg):
                if res.kind == "response":
                    key = (res.run, str(res.index))
                    responses[key] = (res.buffers["response"], bool(res.meta.get("truncated")))
    return responses


def score_delay(
    responses: np.ndarray, trial_ids: np.ndarray, model, bank, **protocol
) -> dict[str, float]:
    """Bank top-1/top-5 and MindEye's retrieval of responses decoded by ``model``."""
    from mindeye_models.eval_retrieval import repetition_average, retrieval_accuracy
    from mindeye_models.inference import predict
    from mindeye_models.ranks import top_k_accuracy, true_ranks

    _, projected = predict(model, responses)
    ids, _ = bank.retrieve(projected, k=len(bank))
    ranks = true_ranks(ids, trial_ids)
    images = np.unique(trial_ids)
    tokens = bank.lookup(images)
    single = retrieval_accuracy(projected, tokens, np.searchsorted(images, trial_ids), **protocol)
    means, _, _ = repetition_average(responses, trial_ids)
    averaged = retrieval_accuracy(predict(model, means)[1], tokens, None, **protocol)
    return {
        "ways": len(bank),
        "top1": top_k_accuracy(ranks, 1),
        "top5": top_k_accuracy(ranks, 5),
        "image_retrieval": single["brain_to_image"]["mean"],
        "image_retrieval_ci_low": single["brain_to_image"]["ci_low"],
        "image_retrieval_ci_high": single["brain_to_image"]["ci_high"],
        "brain_retrieval": single["image_to_brain"]["mean"],
        "image_retrieval_averaged": averaged["brain_to_image"]["mean"],
        "brain_retrieval_averaged": averaged["image_to_brain"]["mean"],
    }


def accuracy_vs_delay(
    out: str | Path,
    delays: list[float],
    *,
    device: str | None = None,
    sample_size: int = SAMPLE_SIZE,
    draws: int = DRAWS,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict:
    """Re-estimate and score the session at each delay; write the TSV and the plot.

    Returns
    -------
    ``{"rows": [one dict per delay, :data:`COLUMNS`], "offline_top1", "realtime_top1",
    "session_delay_s", "tsv", "png"}``.
    """
    from realtime.eval_delays_plot import plot_accuracy_vs_delay
    from realtime.eval_session import load_session, session_decoder, test_trials
    from realtime.summary import offline_retrieval, read_retrievals
    from replay_data.dataset_reader import ReplayDataset
    from rt_base.atomic import write_text

    out, session = load_session(out)
    tr = float(ReplayDataset.open(session["dataset"]).meta.tr)
    retrievals = read_retrievals(out)
    rows = test_trials(retrievals, session["bank_ids"])
    if len({r["image_id"] for r in rows}) < 2:
        raise ConfigError(f"{str(out)!r} has no decoded trials of >= 2 bank images to score")
    model, bank = session_decoder(session, device)
    protocol = dict(sample_size=sample_size, draws=draws, seed=seed)
    keys = [(r["run"], str(r["trial"])) for r in rows]
    trial_ids = np.array([int(r["image_id"]) for r in rows])
    table = []
    for delay in delays:
        estimated = reestimate(out, session, delay, tr)
        have = [i for i, k in enumerate(keys) if k in estimated]
        responses = np.stack([estimated[keys[i]][0] for i in have])
        row = {
            "delay_s": delay,
            "trials": len(have),
            "truncated": sum(estimated[keys[i]][1] for i in have),
        }
        row.update(score_delay(responses, trial_ids[have], model, bank, **protocol))
        log(
            f"decode delay {delay:5.1f} s: top-1 {100 * row['top1']:5.1f} %  "
            f"(image retrieval {100 * row['image_retrieval']:5.1f} %, repetition-averaged "
            f"{100 * row['image_retrieval_averaged']:5.1f} %; {row['trials']} trials)"
        )
        table.append(row)
    offline = offline_retrieval(out, session, retrievals, tr)["top1"]
    realtime_ranks = np.array([int(r["rank"]) for r in rows if r.get("rank")])
    result = {
        "rows": table,
        "offline_top1": offline,
        "realtime_top1": float(np.mean(realtime_ranks == 1)) if realtime_ranks.size else None,
        "session_delay_s": float(session.get("config", {}).get("decode_delay", 8.0)),
        "tsv": str(out / DELAYS_TSV),
        "png": str(out / DELAYS_PNG),
    }
    lines = ["\t".join(COLUMNS)]
    lines += ["\t".join(_cell(c, row[c]) for c in COLUMNS) for row in table]
    write_text(out / DELAYS_TSV, "\n".join(lines) + "\n")
    title = f"{'SIMULATED ' if session.get('simulated') else ''}{session.get('dataset_name')}"
    plot_accuracy_vs_delay(result, out / DELAYS_PNG, title=title)
    log(
        f"offline (whole-run GLM) top-1 {100 * offline:.1f} %; written {out / DELAYS_TSV}, "
        f"{out / DELAYS_PNG}"
    )
    return result


def _cell(column: str, value) -> str:
    if column == "delay_s":
        return f"{value:g}"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
