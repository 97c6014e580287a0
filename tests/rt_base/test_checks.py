import math

import pytest

from rt_base.checks import check_address, check_choice, check_number, check_path
from rt_base.errors import ConfigError


@pytest.mark.parametrize(
    ("value", "kwargs", "match"),
    [
        (-1.6, {"minimum": 0, "strict_min": True, "unit": "seconds"},
         r"'x' must be a positive number of seconds, got -1.6"),
        (0, {"minimum": 0, "strict_min": True}, r"must be a positive number, got 0"),
        (-1, {"minimum": 0}, r"must be a non-negative number"),
        (2.5, {"integer": True}, r"must be an integer, got 2.5"),
        ("abc", {}, r"must be a number, got 'abc'"),
        (True, {}, r"must be a number, got True"),
        (math.nan, {}, r"must be a finite number"),
        (11, {"maximum": 10, "integer": True}, r"must be an integer <= 10, got 11"),
        (3, {"minimum": 5, "integer": True}, r"must be an integer >= 5, got 3"),
    ],
)  # fmt: skip
def test_check_number_names_argument_rule_and_value(value, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        check_number(value, "x", **kwargs)


def test_check_number_normalizes():
    assert check_number("3", "x", integer=True) == 3
    assert isinstance(check_number(4.0, "x", integer=True), int)
    assert check_number("1.5", "x") == 1.5


def test_check_choice_and_address():
    assert check_choice("a", "mode", ("a", "b")) == "a"
    with pytest.raises(ConfigError, match=r"'mode' must be one of 'a', 'b', got 'c'"):
        check_choice("c", "mode", ("a", "b"))
    assert check_address("tcp://127.0.0.1:5555", "addr") == "tcp://127.0.0.1:5555"
    for bad in ("127.0.0.1:5555", "udp://x:1", None):
        with pytest.raises(ConfigError, match="'addr'"):
            check_address(bad, "addr")


def test_check_path_kinds_and_remedy(tmp_path):
    f = tmp_path / "weights.safetensors"
    f.write_bytes(b"x")
    assert check_path(str(f), "checkpoint", kind="file") == f
    assert check_path(tmp_path, "out", kind="dir") == tmp_path
    with pytest.raises(
        ConfigError, match=r"'checkpoint' must be an existing file, .*not found.*: train"
    ):
        check_path(tmp_path / "nope", "checkpoint", kind="file", remedy="train one")
    with pytest.raises(ConfigError, match=r"'checkpoint' must be a file, .*\(a folder\)"):
        check_path(tmp_path, "checkpoint", kind="file")
    with pytest.raises(ConfigError, match=r"'out' must be a folder, .*\(not a folder\)"):
        check_path(f, "out", kind="dir")
    assert check_path(tmp_path / "new", "out", kind="dir", must_exist=False) == tmp_path / "new"
    for bad in ("", None, 3, True):
        with pytest.raises(ConfigError, match="'out' must be a path"):
            check_path(bad, "out")
    with pytest.raises(ConfigError, match="'kind'"):
        check_path(f, "x", kind="symlink")
