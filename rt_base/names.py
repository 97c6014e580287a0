"""Names shared by the stages, the recorder, the summary and the consoles.

A stage stamps ``msg.t["<stage>.<event>"] = time.time()`` as a message passes; the latency of a
stage is the difference of two stamps.  This module is the one list of those names.
"""

from __future__ import annotations

#: the pipeline's stages, in data-path order
STAGE_NAMES: tuple[str, ...] = (
    "source",
    "preprocess",
    "estimate",
    "decode",
    "reconstruct",
    "recorder",
)

#: the stages ``stream --fuse-stages`` runs in one process, in data-path order: one stage on the
#: wire, named :data:`FUSED_STAGE` (each part still stamps, logs and reports under its own name)
FUSED_PARTS: tuple[str, ...] = ("preprocess", "estimate", "decode")
FUSED_STAGE = "fused"
#: the stage that makes the session's messages (a replay, or the scanner's export folder)
SOURCE_STAGE = "source"

#: stages a session may run without (``--recon none``)
OPTIONAL_STAGES: frozenset[str] = frozenset({"reconstruct"})

#: the events a stage stamps into ``msg.t``
STAMP_EVENTS: tuple[str, ...] = ("acquired", "received", "started", "done", "sent")


def stamp(stage: str, event: str) -> str:
    """The timestamp key ``"<stage>.<event>"`` (e.g. ``"decode.done"``)."""
    return f"{stage}.{event}"


#: A latency span: (the message kind it is measured on, start stamp, end stamp).  Messages carry
#: the stamps of every stage they came through, so each span is measured on one kind only, once
#: per volume or trial.  "reconstruct" is the reconstruction itself, without the time the trial
#: waited in the queue.
Span = tuple[str, str, str]

#: spans the consoles show live, from the telemetry stream
LIVE_SPANS: dict[str, Span] = {
    "source": ("volume", "source.acquired", "source.done"),
    "preprocess": ("tr", "preprocess.received", "preprocess.done"),
    "estimate": ("response", "estimate.received", "estimate.done"),
    "decode": ("retrieval", "decode.received", "decode.done"),
    "end-to-end": ("retrieval", "source.acquired", "decode.done"),
    "reconstruct": ("recon", "reconstruct.started", "reconstruct.done"),
    "acq→recon": ("recon", "source.acquired", "reconstruct.done"),
}

#: spans the session summary reads from the recorder's ``timing.jsonl`` (per stage; the recorder
#: sees "tr", "retrieval" and "recon" messages, so source and estimate are measured on those)
RECORDED_SPANS: dict[str, Span] = {
    "source": ("tr", "source.acquired", "source.done"),
    "preprocess": ("tr", "preprocess.received", "preprocess.done"),
    # the TR that made the trial due: add the volume, solve the GLM
    "estimate": ("retrieval", "estimate.received", "estimate.done"),
    "decode": ("retrieval", "decode.received", "decode.done"),
    "reconstruct": ("recon", "reconstruct.started", "reconstruct.done"),
    "recorder": ("retrieval", "decode.done", "recorder.received"),
}

#: the end-to-end span of retrieval: volume acquired -> top-k retrieval out of decode
END_TO_END: Span = LIVE_SPANS["end-to-end"]
