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
    ],
)
def test_bad_values_are_named(field, value, match):
    with pytest.raises(ConfigError, match=match):
        StreamConfig(**{field: value})


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
