"""The accuracy-against-decode-delay figure (matplotlib, written without a display)."""

from __future__ import annotations

from pathlib import Path

from rt_base.atomic import write_with


def plot_accuracy_vs_delay(result: dict, path: str | Path, *, title: str = "") -> Path:
    """Top-1 retrieval per decode delay, with the offline end-of-run accuracy as a line.

    Parameters
    ----------
    result : what :func:`realtime.eval_delays.accuracy_vs_delay` computed (``rows``,
        ``offline_top1``, ``realtime_top1``, ``session_delay_s``).
    path : the PNG written (atomically).
    title : names the subject.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display: a file only
    from matplotlib.figure import Figure

    rows = result["rows"]
    delays = [r["delay_s"] for r in rows]
    fig = Figure(figsize=(6.4, 4.0), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(delays, [100 * r["top1"] for r in rows], "o-", color="C0", label="single trial")
    ax.fill_between(
        delays,
        [100 * r["image_retrieval_ci_low"] for r in rows],
        [100 * r["image_retrieval_ci_high"] for r in rows],
        color="C0",
        alpha=0.15,
        linewidth=0,
        label="single trial, 95 % interval",
    )
    ax.plot(
        delays,
        [100 * r["image_retrieval_averaged"] for r in rows],
        "s--",
        color="C2",
        label="repetition-averaged",
    )
    if result.get("offline_top1") is not None:
        ax.axhline(
            100 * result["offline_top1"],
            color="C3",
            linestyle="--",
            label="offline, whole-run GLM (end of run)",
        )
    if result.get("realtime_top1") is not None:
        ax.plot(
            [result["session_delay_s"]],
            [100 * result["realtime_top1"]],
            "*",
            color="k",
            markersize=11,
            label="as decoded in real time",
        )
    ways = rows[0]["ways"] if rows else 0
    if ways:
        ax.axhline(100 / ways, color="grey", linestyle=":", label=f"chance ({ways}-way)")
    ax.set_xlabel("decode delay after trial onset (s)")
    ax.set_ylabel(f"top-1 image retrieval ({ways}-way, %)")
    ax.set_ylim(0, 100)
    ax.set_title(f"Accuracy against decode delay{': ' + title if title else ''}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return write_with(Path(path), lambda tmp: fig.savefig(tmp, format="png"))
