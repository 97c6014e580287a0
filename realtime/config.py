"""Typed session configuration, loadable from TOML; unknown or mistyped keys raise."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from realtime.checks import check_choice, check_number
from realtime.errors import ConfigError

LAUNCHERS = ("process", "thread")


@dataclass
class StreamConfig:
    """Everything ``mindeye-rt stream`` needs; each field is a CLI option of the same name."""

    replay: str = "subj01"
    out: str | None = None
    speed: float = 1.0
    headless: bool = False
    decode_delay: float = 8.0
    top_k: int = 5
    preset: str = "demo"
    checkpoint: str | None = None
    clip_weights: str | None = None
    device: str = "cpu"
    runs: list[str] = field(default_factory=list)
    max_volumes: int | None = None
    host: str = "127.0.0.1"
    base_port: int = 5550
    launcher: str = "process"
    train_epochs: int | None = None
    quiet: bool = False

    def __post_init__(self) -> None:
        self.speed = check_number(self.speed, "speed", minimum=0.0)
        self.decode_delay = check_number(
            self.decode_delay,
            "decode_delay",
            minimum=0.0,
            strict_min=True,
            maximum=30.0,
            unit="seconds",
        )
        self.top_k = check_number(self.top_k, "top_k", minimum=1, integer=True)
        self.base_port = check_number(
            self.base_port, "base_port", minimum=1024, maximum=65528, integer=True
        )
        if self.max_volumes is not None:
            self.max_volumes = check_number(
                self.max_volumes, "max_volumes", minimum=1, integer=True
            )
        if self.train_epochs is not None:
            self.train_epochs = check_number(
                self.train_epochs, "train_epochs", minimum=1, integer=True
            )
        check_choice(self.launcher, "launcher", LAUNCHERS)
        if not isinstance(self.replay, str) or not self.replay:
            raise ConfigError(f"'replay' must be a dataset name or path, got {self.replay!r}")
        if self.device != "cpu" and not self.device.startswith(("cuda", "mps")):
            raise ConfigError(
                f"'device' must be 'cpu', 'cuda', 'cuda:N' or 'mps', got {self.device!r}"
            )
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError(f"'host' must be an interface address, got {self.host!r}")

    def addresses(self) -> dict[str, str]:
        """The session's ZMQ endpoints: each stage's input, the telemetry hub (stages publish into
        ``telemetry_in``, consoles subscribe at ``telemetry``) and the source's ``control``."""
        names = [
            "preprocess",
            "estimate",
            "decode",
            "recorder",
            "telemetry_in",
            "telemetry",
            "control",
        ]
        return {n: f"tcp://{self.host}:{self.base_port + i}" for i, n in enumerate(names)}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(path: str | Path, **overrides: Any) -> StreamConfig:
    """Read a TOML file (top-level keys or a ``[stream]`` table) into a :class:`StreamConfig`."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {err}") from None
    data = data.get("stream", data)
    known = {f.name for f in dataclasses.fields(StreamConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"config file {str(path)!r} has unknown key(s) {unknown}; known keys: {sorted(known)}"
        )
    data.update({k: v for k, v in overrides.items() if v is not None})
    return StreamConfig(**data)
