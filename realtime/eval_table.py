"""The papers' table (MindEye, Table 1: low-level, high-level and retrieval columns) in Markdown,
from what :func:`realtime.eval_session.evaluate_session` computed."""

from __future__ import annotations

from mindeye_models.eval_recon import IDENTIFICATION, RECON_METRICS

#: column headers, in the papers' short names and order (arrow: which way is better)
HEADERS = {
    "PixCorr": "PixCorr ↑",
    "SSIM": "SSIM ↑",
    "AlexNet(2)": "Alex(2) ↑",
    "AlexNet(5)": "Alex(5) ↑",
    "InceptionV3": "Incep ↑",
    "CLIP": "CLIP ↑",
    "EffNet-B": "Eff ↓",
    "SwAV": "SwAV ↓",
    "brain_to_image": "Image retr. ↑",
    "image_to_brain": "Brain retr. ↑",
}
NOT_COMPUTED = "n/c"
#: what each reconstruction table of :func:`realtime.eval_session.recon_section` scores
RECON_KINDS = {
    "recon": "single-trial reconstructions as the session drew them",
    "blurry": "their blurry low-level images",
    "averaged_lowlevel": "low-level reconstructions of the repetition-averaged responses "
    "(drawn by the session's reconstruction models; the papers reconstruct these)",
}
NOT_APPLICABLE = "–"


def _value(name: str, value: float) -> str:
    """The papers' formats: percentages for identification and retrieval, else 3 decimals."""
    if name in IDENTIFICATION or name in ("brain_to_image", "image_to_brain"):
        return f"{100 * value:.1f}%"
    text = f"{value:.3f}"
    return text.replace("0.", ".", 1) if abs(value) < 1 else text


def _recon_cells(table: dict | None, key: str) -> list[str]:
    cells = []
    for name in RECON_METRICS:
        m = None if table is None else table["metrics"][name]
        if m is None:
            cells.append(NOT_APPLICABLE)
        elif not m["computed"]:
            cells.append(NOT_COMPUTED)
        else:
            cells.append(_value(name, m[key]))
    return cells


def _retrieval_cells(r: dict | None, key: str = "mean") -> list[str]:
    if r is None:
        return [NOT_APPLICABLE, NOT_APPLICABLE]
    if key == "chance":
        return [_value(d, r["chance"]) for d in ("brain_to_image", "image_to_brain")]
    return [_value(d, r[d][key]) for d in ("brain_to_image", "image_to_brain")]


def _row(label: str, cells: list[str]) -> str:
    return "| " + " | ".join([label, *cells]) + " |"


def _recon_rows(recon: dict) -> list[tuple[str, dict | None, bool]]:
    """(label, reconstruction table, retrieval of that kind?) of each row, in order.

    The low-level reconstructions of the averaged responses fill the repetition-averaged row
    of a ``lowlevel`` session (its reconstructions are low-level images); in ``full`` mode they
    sit next to the single-trial blurry images."""
    full = "blurry" in recon
    averaged = recon.get("averaged_lowlevel")
    rows = [("single trials", recon.get("recon"), True)]
    if full:
        rows.append(("single trials, blurry", recon["blurry"], False))
    rows.append(("repetition-averaged", None if full else averaged, True))
    if full and averaged is not None:
        rows.append(("repetition-averaged, blurry", averaged, False))
    return rows


def markdown_table(result: dict) -> str:
    """The table with its chance row and the notes that say what each figure is."""
    subject = "SIMULATED subject" if result.get("simulated") else "subject"
    retrieval, recon = result["retrieval"], result.get("reconstruction") or {}
    single, averaged = retrieval["single_trial"], retrieval["repetition_averaged"]
    lines = [
        f"## MindEye evaluation: {subject} {result.get('dataset')}",
        "",
        _row("Method", list(HEADERS.values())),
        _row("---", ["---:"] * len(HEADERS)),
    ]
    for label, table, with_retrieval in _recon_rows(recon):
        r = (single if label == "single trials" else averaged) if with_retrieval else None
        lines.append(_row(label, _recon_cells(table, "value") + _retrieval_cells(r)))
    chance_recon = recon.get("recon") or recon.get("averaged_lowlevel")
    chance = _recon_cells(chance_recon, "chance") + _retrieval_cells(single, "chance")
    lines.append(_row("chance", chance))
    if "blurry" in recon:  # blurry images have their own chance level (their smooth layout)
        chance = _recon_cells(recon["blurry"], "chance") + _retrieval_cells(None)
        lines.append(_row("chance, blurry", chance))
    lines += ["", *_notes(result)]
    return "\n".join(lines) + "\n"


def _interval(r: dict) -> str:
    return ", ".join(
        f"{HEADERS[d].split()[0].lower()} {100 * r[d]['ci_low']:.1f}-{100 * r[d]['ci_high']:.1f}%"
        for d in ("brain_to_image", "image_to_brain")
    )


def _notes(result: dict) -> list[str]:
    single = result["retrieval"]["single_trial"]
    averaged = result["retrieval"]["repetition_averaged"]
    ways = single["ways"]
    n_way = "all the test images: fewer than 300" if ways == single["images"] else "random"
    notes = [
        f"- Retrieval: top-1 among {ways} candidates ({n_way}), mean of {single['draws']} draws "
        f"(chance {100 / ways:.1f}%); image retr. = brain → image, brain retr. = image → brain.",
        f"- 95% intervals ({single['brain_to_image']['interval']}): single trials "
        f"{_interval(single)}; repetition-averaged {_interval(averaged)}.",
        f"- {result['trials']} test trials of {result['images']} images; single trials: one "
        f"random repetition per image and draw; repetition-averaged: the responses of each "
        f"image's {averaged['repetitions_mean']:.2g} trials (mean) averaged, then decoded.",
    ]
    recon = result.get("reconstruction")
    if not recon:
        notes.append("- Reconstructions: none recorded for these trials (`--recon none`).")
        return notes
    for kind, table in recon.items():
        what = RECON_KINDS.get(kind, kind)
        notes.append(
            f"- {what}: {table['reconstructions']} ({', '.join(table.get('mode', []))}) of "
            f"{table['images']} images, PixCorr and SSIM at {table['size']} px; chance = paired "
            "with another seen image (2-way: 50%)."
        )
    first = next(iter(recon.values()))
    absent = {m["reason"] for m in first["metrics"].values() if not m["computed"]}
    for reason in sorted(absent):
        notes.append(f"- {NOT_COMPUTED} (not computed): {reason}.")
    return notes
