"""``stream --finetune between-runs --finetune-budget 60s``: the options, and what they add to
the stage specs (the decode stage's ``finetune`` mapping, the replay source's wait)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mindeye_models.finetune_config import HOLDOUTS, PARAMS, VERDICTS, check_alphas
from rt_base.checks import check_choice, check_number
from rt_base.errors import ConfigError

#: ``--finetune`` values: no fine-tuning, or a step after each run
FINETUNE_MODES = ("off", "between-runs")
FOLDER = "finetune"
_SECONDS = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?)\s*(s|sec|min|m)?\s*")


def parse_budget(value: Any) -> float:
    """``60``, ``"60s"``, ``"1.5min"`` -> seconds (1 s to 1 h)."""
    if isinstance(value, str):
        match = _SECONDS.fullmatch(value)
        if match is None:
            raise ConfigError(
                f"'finetune_budget' must be seconds like 60 or '60s' (or '2min'), got {value!r}"
            )
        value = float(match.group(1)) * (60 if match.group(2) in ("min", "m") else 1)
    return float(check_number(value, "finetune_budget", minimum=1, maximum=3600, unit="seconds"))


def check_finetune(
    mode: str, budget: Any, params: str, holdout: str = "images"
) -> tuple[str, float, str]:
    """The checked ``finetune``, ``finetune_budget`` (seconds) and ``finetune_params``
    (``finetune_holdout`` is checked too)."""
    check_choice(mode, "finetune", FINETUNE_MODES)
    check_choice(params, "finetune_params", PARAMS)
    check_choice(holdout, "finetune_holdout", HOLDOUTS)
    return mode, parse_budget(budget), params


def check_finetune_choice(alphas: Any, verdict: Any) -> tuple[tuple[float, ...] | None, str | None]:
    """The checked ``finetune_alphas`` (``"0.25,0.5,1"`` or a list -> a sorted tuple) and
    ``finetune_verdict``; None keeps the step's default (:class:`FinetuneConfig`)."""
    if alphas is not None:
        alphas = check_alphas(alphas, "finetune_alphas")
    if verdict is not None:
        check_choice(verdict, "finetune_verdict", VERDICTS)
    return alphas, verdict


def check_finetune_anchor(rehearsal: Any, l2sp: Any) -> tuple[str | None, float | None]:
    """The checked ``finetune_rehearsal`` (a rehearsal file's path, its layout checked from
    the headers; ``none`` or None: no rehearsal) and ``finetune_l2sp`` (>= 0; None keeps the
    step's default)."""
    if rehearsal is not None:
        if not isinstance(rehearsal, (str, Path)) or not str(rehearsal):
            raise ConfigError(
                f"'finetune_rehearsal' must be the path of a rehearsal .npz or 'none', got "
                f"{rehearsal!r}"
            )
        if str(rehearsal).lower() == "none":
            rehearsal = None
        else:
            from mindeye_models.finetune_rehearsal import check_rehearsal_file

            rehearsal = str(Path(rehearsal).expanduser())
            check_rehearsal_file(rehearsal)
    if l2sp is not None:
        l2sp = float(check_number(l2sp, "finetune_l2sp", minimum=0, maximum=1e6))
    return rehearsal, l2sp


def add_stream_finetune_options(p) -> None:
    """The ``stream`` options of fine-tuning between runs."""
    g = p.add_argument_group("fine-tuning between runs")
    g.add_argument(
        "--finetune",
        choices=list(FINETUNE_MODES),
        help="between-runs: after each run, fine-tune the decoder on the session's trials so "
        "far in its own process, and decode the next run with it if it validates better on "
        "held-out trials (default off)",
    )
    g.add_argument(
        "--finetune-budget",
        dest="finetune_budget",
        help="time a step may take, e.g. 60s (default); a replay waits for it between runs",
    )
    g.add_argument(
        "--finetune-params",
        dest="finetune_params",
        choices=list(PARAMS),
        help="what a step trains: lin0, the per-subject input layer (default), or all",
    )
    g.add_argument(
        "--finetune-holdout",
        dest="finetune_holdout",
        choices=list(HOLDOUTS),
        help="what validates a step: images (default; every trial of the last 20 %% of the "
        "trials' images is held out, so validation is on images the step did not train on) "
        "or trials (only the last 20 %% of the trials)",
    )
    g.add_argument(
        "--finetune-alphas",
        dest="finetune_alphas",
        help="points between the current (0) and the fine-tuned (1) weights that a step "
        "validates, e.g. 0.25,0.5,0.75,1; it keeps the best that passes the verdict, or none "
        "(1: the fine-tuned weights only; default: the step's, see the README)",
    )
    g.add_argument(
        "--finetune-verdict",
        dest="finetune_verdict",
        choices=list(VERDICTS),
        help="what a swap needs on the held-out trials: top1-rank (top-1 not lower, mean rank "
        "not higher, one better) or mrr (mean reciprocal rank higher, top-1 not lower); "
        "default: the step's, see the README",
    )
    g.add_argument(
        "--finetune-rehearsal",
        dest="finetune_rehearsal",
        help="an .npz of the trials the starting model was trained on (the subject's earlier "
        "session: responses, image ids and the images' embeddings; format in the README): each "
        "batch of a step also carries as many of them; the session records its path and sha256 "
        "(default none)",
    )
    g.add_argument(
        "--finetune-l2sp",
        dest="finetune_l2sp",
        help="weight of a penalty toward the step's starting weights (L2-SP: lambda * "
        "||theta - theta0||^2 / ||theta0||^2), e.g. 10; default 0 (none)",
    )


def add_finetune_specs(cfg, ds, runs: list[str], specs: dict[str, dict], out: Path) -> None:
    """With ``--finetune between-runs``: the decode stage's ``finetune`` mapping (targets: every
    image the replayed runs show) and, for a replay, the source's wait between runs."""
    if cfg.finetune == "off":
        return
    from realtime.stages.decode_finetune import wait_limit_s

    image_ids = sorted({int(e.image_id) for r in runs for e in ds.events(r)})
    specs["decode"]["finetune"] = {
        "mode": cfg.finetune,
        "dir": str(out / FOLDER),
        "budget_s": cfg.finetune_budget,
        "params": cfg.finetune_params,
        "holdout": cfg.finetune_holdout,
        **{
            key: getattr(cfg, f"finetune_{key}")
            for key in ("alphas", "verdict", "l2sp")
            if getattr(cfg, f"finetune_{key}") is not None
        },
        "image_ids": image_ids,
        "last_run": None if cfg.scanner else runs[-1],  # a scanner may run more or fewer
    }
    if cfg.finetune_rehearsal is not None:  # path and content, recorded with every step
        from mindeye_models.finetune_rehearsal import rehearsal_record

        specs["decode"]["finetune"]["rehearsal"] = rehearsal_record(cfg.finetune_rehearsal)
    if not cfg.scanner:  # the scanner sets the pace: its breaks are the step's time
        specs["source"].update(
            finetune_wait_s=wait_limit_s(cfg.finetune_budget),
            finetune_status_addr=cfg.addresses()["telemetry"],
        )
