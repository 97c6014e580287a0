import dataclasses

import pytest

from realtime.cli import main
from realtime.config import StreamConfig, load_config
from rt_base.errors import ConfigError


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("speed", -1, "'speed' must be a non-negative number"),
        ("speed", "fast", "'speed' must be a number"),
        ("decode_delay", 0, "'decode_delay' must be a positive number of seconds"),
        ("decode_delay", 45, "<= 30"),
        ("top_k", 0, "'top_k' must be an integer >= 1"),
        ("top_k", 2.5, "'top_k' must be an integer"),
        ("base_port", 80, "'base_port'"),
        ("launcher", "cloud", "'launcher' must be one of"),
        ("device", "tpu", "'device'"),
        ("replay", "", "'replay'"),
        ("max_volumes", 0, "'max_volumes'"),
        ("decode_precision", "fp16", "'decode_precision' must be one of"),
    ],
)
def test_bad_values_are_named(field, value, match):
    with pytest.raises(ConfigError, match=match):
        StreamConfig(**{field: value})


def test_int8_decoding_is_refused_on_a_gpu():
    with pytest.raises(ConfigError, match="int8 runs on the CPU only"):
        StreamConfig(decode_precision="int8", device="cuda")


def test_auto_precision_is_int8_on_the_cpu_and_fp32_on_a_gpu_and_is_recorded_resolved():
    assert StreamConfig().decode_precision == "int8"
    assert StreamConfig(device="cuda").decode_precision == "fp32"
    assert StreamConfig(decode_precision="fp32").decode_precision == "fp32"


def test_defaults_bind_loopback_only():
    addrs = StreamConfig().addresses()
    assert all(a.startswith("tcp://127.0.0.1:") for a in addrs.values())
    assert len(set(addrs.values())) == len(addrs)


def test_toml_config_strict_keys(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text("[stream]\nspeed = 0\ndecode_delay = 6.4\n")
    cfg = load_config(good, top_k=3)
    assert (cfg.speed, cfg.decode_delay, cfg.top_k) == (0, 6.4, 3)
    bad = tmp_path / "bad.toml"
    bad.write_text("speed = 0\ndecode_dealy = 6\n")
    with pytest.raises(ConfigError, match="unknown key.*decode_dealy"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("speed = = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)


def test_cli_reports_bad_option_and_exits_2(capsys):
    assert main(["stream", "--speed", "-2", "--headless"]) == 2
    assert "'speed' must be a non-negative number, got -2" in capsys.readouterr().err


def test_cli_stage_rejects_unknown_option(capsys):
    code = main(["stage", "recorder", "--set", "out_dir=/nonexistent/x", "--set", "colour=red"])
    assert code == 2
    assert "does not take option(s) ['colour']" in capsys.readouterr().err


def test_model_info_reports_paper_backbone(capsys):
    import json

    assert main(["model-info", "--preset", "mindeye1-subj01"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert abs(counts["backbone"] - 940e6) / 940e6 < 0.01


def test_missing_checkpoint_is_refused_before_any_stage_starts(tmp_path, capsys, data_home):
    from replay_data.simulate import simulate_subject
    from replay_data.simulation_config import SimulationConfig

    ds = simulate_subject(tmp_path / "ds", SimulationConfig.tiny(), progress=False)
    code = main(
        [
            "stream",
            "--replay",
            str(ds.root),
            "--headless",
            "--quiet",
            "--checkpoint",
            str(tmp_path / "none.safetensors"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert (
        "'checkpoint' must be an existing MindEye checkpoint" in err and "none.safetensors" in err
    )


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"recon": "blurry"}, "'recon'"),
        ({"recon": "full"}, "needs a generator"),
        ({"recon_strength": -1}, "'recon_strength'"),
        ({"recon_dtype": "float16"}, "needs a CUDA device"),
        ({"recon_device": "tpu"}, "'recon_device'"),
        ({"generator": ""}, "'generator'"),
    ],
)
def test_stream_config_checks_recon_options(changes, match):
    with pytest.raises(ConfigError, match=match):
        StreamConfig(**changes)


def test_auto_mode_follows_the_generator():
    assert StreamConfig().recon_mode == "lowlevel"
    assert StreamConfig(generator="tiny-random").recon_mode == "full"
    assert StreamConfig(recon="none", generator="x").recon_mode == "none"


def test_every_config_field_is_a_stream_option(monkeypatch):
    """`stream` has an option per StreamConfig field and hands the given ones to the config."""
    import argparse

    import realtime.pipeline
    from realtime.cli import _add_stream

    parser = argparse.ArgumentParser()
    _add_stream(parser.add_subparsers(dest="command"))
    dests = set(vars(parser.parse_args(["stream"])))
    assert {f.name for f in dataclasses.fields(StreamConfig)} <= dests
    seen = {}

    def fake_run(cfg, open_console=None):
        seen["cfg"] = cfg
        return {"complete": True}

    monkeypatch.setattr(realtime.pipeline, "run_stream", fake_run)
    argv = ["stream", "--replay", "x", "--top-k", "3", "--recon", "none", "--vae", "v"]
    assert main(argv) == 0
    cfg = seen["cfg"]
    assert (cfg.replay, cfg.top_k, cfg.recon, cfg.vae) == ("x", 3, "none", "v")
    assert cfg.speed == StreamConfig().speed  # not given: the default


@pytest.mark.parametrize(("recon", "with_prior"), [("lowlevel", False), ("full", True)])
def test_a_session_trains_only_the_reconstruction_parts_it_uses(
    recon, with_prior, tiny_dataset, tiny_model, tiny_recon, tmp_path, data_home, monkeypatch
):
    import mindeye_models.recon_training
    from realtime.preparation import prepare

    calls = []

    def ensure(dataset, checkpoint, **kwargs):
        calls.append(kwargs)
        return tiny_recon

    monkeypatch.setattr(mindeye_models.recon_training, "ensure_recon_models", ensure)
    cfg = StreamConfig(
        replay=str(tiny_dataset.root),
        out=str(tmp_path / "s"),
        checkpoint=str(tiny_model),
        recon=recon,
        generator="tiny-random" if recon == "full" else None,
        quiet=True,
    )
    prep = prepare(cfg, log=lambda *a: None)
    assert [c["with_prior"] for c in calls] == [with_prior]
    assert prep.session["recon"] == recon and prep.specs["reconstruct"]["bundle"] == str(tiny_recon)
    assert prep.specs["decode"]["emit_latents"] is True
    assert prep.specs["decode"]["out_addr"] == prep.specs["reconstruct"]["in_addr"]
    assert (prep.out / "stages" / "reconstruct.json").is_file()


def test_a_full_session_refuses_given_models_without_a_prior(
    tiny_dataset, tiny_model, tiny_recon, tmp_path, data_home
):
    from mindeye_models.recon_bundle import ReconBundle, load_bundle
    from realtime.preparation import prepare
    from rt_base.errors import WeightsError

    full = load_bundle(tiny_recon)
    low = ReconBundle(full.token_shape, head=full.head, autoencoder=full.autoencoder)
    low.info = dict(full.info)
    path = low.save(tmp_path / "low.safetensors")
    cfg = StreamConfig(
        replay=str(tiny_dataset.root),
        out=str(tmp_path / "s"),
        checkpoint=str(tiny_model),
        recon="full",
        generator="tiny-random",
        recon_models=str(path),
        quiet=True,
    )
    with pytest.raises(WeightsError, match="holds no diffusion prior"):
        prepare(cfg, log=lambda *a: None)
    assert not (tmp_path / "s").exists()  # refused before the session folder is made
    lowlevel = prepare(dataclasses.replace(cfg, recon="lowlevel"), log=lambda *a: None)
    assert lowlevel.session["recon_bundle"] == str(path)


def test_summarize_refuses_a_folder_that_is_not_a_session(tmp_path, capsys):
    from realtime.cli import main

    assert main(["summarize", str(tmp_path / "missing")]) == 2
    assert "'session' must be an existing folder" in capsys.readouterr().err
    assert main(["summarize", str(tmp_path)]) == 2
    assert "is not a session folder (no config.json)" in capsys.readouterr().err
