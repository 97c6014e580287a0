"""One contract for every stage: how it builds from its spec, what its status carries, what it
does with a kind of message it does not know."""

from __future__ import annotations

import inspect

import pytest

from realtime.stages import LINK_KEYS, STAGES, build_stage, stage_class
from realtime.stages.base import COUNTERS
from rt_base.errors import ConfigError
from rt_base.names import FUSED_STAGE, STAGE_NAMES
from rt_wire.message import Message

#: stages with no downstream to pass a message to (the source has no input either)
ENDS = {"source", "recorder"}


def test_every_stage_name_has_one_class():
    # the fused stage (--fuse-stages) runs preprocess, estimate and decode: not a stage name
    assert tuple(n for n in STAGES if n != FUSED_STAGE) == STAGE_NAMES
    assert FUSED_STAGE in STAGES
    for name, cls in STAGES.items():
        assert cls.name == name and stage_class(name) is cls
    with pytest.raises(ConfigError, match=r"stage name must be one of \['source', .*got 'decoder'"):
        build_stage("decoder", {})


@pytest.mark.parametrize("name", [*STAGE_NAMES, FUSED_STAGE])
def test_spec_options_are_the_builders_parameters(name):
    cls = STAGES[name]
    params = inspect.signature(cls.from_options).parameters.values()
    keyword_only = [p.name for p in params if p.kind is p.KEYWORD_ONLY]
    takes_more = any(p.kind is p.VAR_KEYWORD for p in params)
    assert cls.spec_options() == (*keyword_only, *cls.extra_spec_options)
    assert bool(cls.extra_spec_options) == takes_more  # a **options names what it takes
    assert not set(cls.spec_options()) & set(LINK_KEYS)
    assert len(set(cls.spec_options())) == len(cls.spec_options())


def test_the_scanner_source_takes_its_folder_and_every_constructor_option():
    from realtime.stages.scanner_source import ScannerSource

    params = inspect.signature(ScannerSource.__init__).parameters.values()
    keyword_only = [p.name for p in params if p.kind is p.KEYWORD_ONLY]
    assert ScannerSource.spec_options() == ("folder", *keyword_only)
    assert stage_class("source", {"folder": "x"}) is ScannerSource
    assert not set(ScannerSource.spec_options()) & set(LINK_KEYS)


def test_the_reconstruct_stage_takes_every_recon_option():
    from mindeye_models.recon_options import ReconOptions

    assert set(ReconOptions.names()) <= set(STAGES["reconstruct"].spec_options())


@pytest.mark.parametrize("name", [*STAGE_NAMES, FUSED_STAGE])
def test_an_unknown_option_is_refused_with_the_list(name):
    accepted = list(STAGES[name].spec_options())
    with pytest.raises(ConfigError, match=r"does not take option\(s\) \['spede'\]") as err:
        build_stage(name, {"spede": 2})
    assert str(accepted) in str(err.value)


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_a_missing_option_is_named_with_its_remedy(name):
    required = [
        p.name
        for p in inspect.signature(STAGES[name].from_options).parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.default is p.empty
    ]
    assert required, f"stage {name!r} needs no option: the test below cannot show one missing"
    with pytest.raises(ConfigError, match=rf"needs option '{required[0]}' \(--set "):
        build_stage(name, {"in_addr": "tcp://127.0.0.1:5999"})


@pytest.fixture(scope="module")
def session_specs(tiny_dataset, tiny_model, tiny_recon, tmp_path_factory):
    """The specs ``mindeye-rt stream`` writes for a session with every stage."""
    from realtime.config import StreamConfig
    from realtime.preparation import prepare

    cfg = StreamConfig(
        replay=str(tiny_dataset.root),
        out=str(tmp_path_factory.mktemp("session")),
        checkpoint=str(tiny_model),
        recon="lowlevel",
        recon_models=str(tiny_recon),
        launcher="thread",
        quiet=True,
    )
    with pytest.MonkeyPatch.context() as mp:  # caches in the specs go to a temporary home
        mp.setenv("MINDEYE_RT_HOME", str(tmp_path_factory.mktemp("home")))
        return prepare(cfg, log=lambda *a: None).specs


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_each_stage_builds_from_its_session_spec(name, session_specs):
    spec = {**session_specs[name], "exit_on_end": False}
    stage = build_stage(name, spec)
    assert type(stage) is STAGES[name]
    for key in set(LINK_KEYS) & set(spec):
        assert getattr(stage, key) == spec[key]
    assert not stage.running  # built, not started: no socket is open yet
    status = stage.status()
    assert {k: status[k] for k in COUNTERS} == dict.fromkeys(COUNTERS, 0)

    # a kind it does not know goes on unchanged (a stage at an end of the path drops it)
    note = Message("note", run="run-01", index=2, meta={"a": 1}, t={"x": 1.0})
    out = list(stage.handle(note))
    assert out == ([] if name in ENDS else [note])
    assert (note.kind, note.meta, note.t, note.buffers) == ("note", {"a": 1}, {"x": 1.0}, {})
