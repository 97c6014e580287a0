"""``--fuse-stages``: preprocess, estimate and decode in one process, one stage on the wire.

Split, a volume's way to its top-k crosses three process boundaries (source -> preprocess ->
estimate -> decode), each a serialisation, a socket and a wake-up of another process that may
wait for a busy core.  The fused stage takes the source's messages and hands each to the three
stages' own :meth:`~realtime.stages.base.Stage.handle` in turn, in its one thread; what decode
returns goes downstream.  The parts are the same classes with the same specs, so they compute
the same thing; only the two inner passages go.

To the rest of the session each part still looks like a stage: it stamps its ``received`` and
``done`` times into the messages it handles (the summary's spans are unchanged), publishes the
kinds it publishes when split (``tr``, ``trial``, ``response``, ``retrieval`` ...), its log lines
and its status under its own name (the parts' messages reach the console once the fused stage
has sent its output downstream, in the order they were made).  The fused stage adds a status of its own (the process's
input and output counters).  Restarts work as for any stage: the fused process keeps its output
until the downstream releases it and acknowledges the source's messages at run boundaries
(:mod:`realtime.stages.recovery`); a restarted one rebuilds every part's state from the run's
start, as a restarted split stage does.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from realtime.stages.base import LINK_KEYS, Stage
from rt_base.errors import ConfigError
from rt_base.names import FUSED_PARTS, FUSED_STAGE, SOURCE_STAGE
from rt_wire import transport
from rt_wire.message import Message


class FusedStage(Stage):
    """The stages of :data:`~rt_base.names.FUSED_PARTS` run in turn in one stage.

    Parameters
    ----------
    parts : the built part stages, in data-path order (their own links unused: no sockets).
    **links : this stage's links (:data:`~realtime.stages.base.LINK_KEYS`): the input of the
        first part, the output of the last.
    """

    name = FUSED_STAGE
    upstream = frozenset({"source"})

    def __init__(self, parts: list[Stage], **links: Any) -> None:
        names = tuple(p.name for p in parts)
        if names != FUSED_PARTS:
            raise ConfigError(f"the fused stage runs {list(FUSED_PARTS)} in order, got {names}")
        super().__init__(**links)
        self.parts = parts
        self._published: list[Message] = []  # what the parts publish, once the output is sent

    @classmethod
    def from_options(cls, links: dict, *, parts: Mapping[str, Mapping[str, Any]]) -> FusedStage:
        """Build from a spec: ``parts`` maps each part's name to its own spec (without links;
        see :func:`fuse_specs`)."""
        incarnation = links.get("incarnation", 0)
        return cls(build_parts(parts, FUSED_PARTS, incarnation), **links)

    # -- the parts in turn ---------------------------------------------------------------------
    def handle(self, msg: Message) -> list[Message]:
        return self._through(0, [msg])

    def idle(self) -> list[Message]:
        return self._each(lambda part: part.idle())

    def finish(self) -> list[Message]:
        return self._each(lambda part: part.finish())

    def _each(self, hook: Callable[[Stage], Iterable[Message]]) -> list[Message]:
        """``hook`` of every part, in order; what one part returns goes through the parts after
        it (as it would cross the wire split)."""
        carried: list[Message] = []
        for i, part in enumerate(self.parts):
            outs = self._through(i, carried, stop=i + 1)
            ready = part._safe(lambda p=part: hook(p))
            carried = outs + self._emitted(part, ready)
        return carried

    def _through(self, first: int, msgs: list[Message], stop: int | None = None) -> list[Message]:
        """``msgs`` handed to parts ``first`` .. ``stop - 1`` (all after ``first`` by default),
        each part's output the next part's input."""
        for part in self.parts[first:stop]:
            outs: list[Message] = []
            for msg in msgs:
                msg.t[f"{part.name}.received"] = time.time()
                part.counters["received"] += 1
                outs += self._emitted(part, part._safe(lambda p=part, m=msg: p.handle(m), msg))
            msgs = outs
        return msgs

    def _emitted(self, part: Stage, outs: list[Message]) -> list[Message]:
        """What ``part`` returned, stamped as its own ``_emit`` would; what it publishes is
        kept as it is now (its sender, its stamps so far) and published once the fused stage
        has sent its output downstream (the console's copy is off the way to the top-k)."""
        done = time.time()
        for out in outs:
            out.t.setdefault(f"{part.name}.done", done)
            if self._pub is not None and out.kind in part.publish_kinds:
                copy = dataclasses.replace(
                    out, meta=dict(out.meta), t=dict(out.t), sender=part.sender
                )
                self._published.append(copy)
        part.counters["sent"] += len(outs)
        return outs

    def _emit(self, push, msgs: list[Message]) -> None:
        super()._emit(push, msgs)
        published, self._published = self._published, []
        for msg in published:
            transport.try_publish(self._pub, msg)

    # -- telemetry ---------------------------------------------------------------------------
    def sockets_open(self) -> None:
        """The parts log and publish through this stage's telemetry socket (this thread's)."""
        for part in self.parts:
            part._pub = self._pub

    def _publish_status(self, final: bool = False) -> None:
        for part in self.parts:
            part._publish_status(final)
        super()._publish_status(final)

    def status(self) -> dict:
        return {**self.counters, "parts": list(FUSED_PARTS)}


def build_parts(
    parts: Mapping[str, Mapping[str, Any]], names: tuple[str, ...], incarnation: int = 0
) -> list[Stage]:
    """The part stages of a fused spec's ``parts``, which must give exactly ``names``; each of
    the fused process's ``incarnation`` (a restarted part takes back what its process kept,
    e.g. preprocess's motion reference).

    Raises
    ------
    ConfigError
        Other parts than ``names``, a part with links of its own, or a part's own bad option.
    """
    from realtime.stages import stage_class  # (the registry imports this module)

    if not isinstance(parts, Mapping) or set(parts) != set(names):
        got = sorted(parts) if isinstance(parts, Mapping) else type(parts).__name__
        raise ConfigError(f"'parts' must give the specs of {list(names)}, got {got}")
    built = []
    for name in names:
        linked = sorted(set(parts[name]) & set(LINK_KEYS))
        if linked:
            raise ConfigError(
                f"the fused stage's part {name!r} must not have links of its own, got {linked}"
            )
        spec = {**parts[name], "incarnation": incarnation}
        built.append(stage_class(name, spec).from_spec(spec))
    return built


def fuse_specs(
    specs: Mapping[str, Mapping[str, Any]], *, with_source: bool = False
) -> dict[str, dict[str, Any]]:
    """The stage specs of a session with :data:`~rt_base.names.FUSED_PARTS` replaced by one
    ``fused`` spec: the first part's input, the last part's output, the parts' own options.
    ``with_source``: the source is a part too (:mod:`realtime.stages.fused_source`), and the
    fused stage has no input."""
    names = (SOURCE_STAGE, *FUSED_PARTS) if with_source else FUSED_PARTS
    missing = [n for n in names if n not in specs]
    if missing:
        raise ConfigError(f"cannot fuse the stages: no spec for {missing}")
    first, last = specs[FUSED_PARTS[0]], specs[FUSED_PARTS[-1]]
    inputs = ("telemetry_addr",) if with_source else ("in_addr", "telemetry_addr")
    fused: dict[str, Any] = {key: first[key] for key in inputs if key in first}
    if "out_addr" in last:
        fused["out_addr"] = last["out_addr"]
    fused["parts"] = {
        name: {k: v for k, v in specs[name].items() if k not in LINK_KEYS} for name in names
    }
    out = {name: dict(spec) for name, spec in specs.items() if name not in names}
    out[FUSED_STAGE] = fused
    return out
