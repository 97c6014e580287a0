"""Typed session configuration, loadable from TOML; unknown or mistyped keys raise."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mindeye_models.decode_precision import PRECISIONS as DECODE_PRECISIONS
from mindeye_models.recon_options import check_recon_options, resolve_mode
from realtime.finetune_options import (
    check_finetune,
    check_finetune_anchor,
    check_finetune_choice,
)
from realtime.session_layout import check_label
from rt_base.checks import check_choice, check_number
from rt_base.errors import ConfigError
from rt_wire.curve_auth import CurveSecurity, remote_addresses
from rt_wire.curve_keys import check_key_name

LAUNCHERS = ("process", "thread")
#: ``--motion``: ``auto`` corrects wherever volumes can move (a scanner, real or moving data)
MOTION_CHOICES = ("auto", "none", "estimate", "correct")
N_ADDRESSES = 8


def _check_device(value: str, name: str) -> None:
    if not isinstance(value, str) or not (
        value in ("cpu", "cuda", "mps") or (value.startswith("cuda:") and value[5:].isdigit())
    ):
        raise ConfigError(f"'{name}' must be 'cpu', 'cuda', 'cuda:N' or 'mps', got {value!r}")


@dataclass
class StreamConfig:
    """Everything ``mindeye-rt stream`` needs; each field is a CLI option of the same name."""

    replay: str = "subj01"
    out: str | None = None
    speed: float = 1.0
    headless: bool = False
    decode_delay: float = 8.0
    top_k: int = 5
    decode_precision: str = "auto"
    preset: str = "demo"
    checkpoint: str | None = None
    clip_weights: str | None = None
    device: str = "cpu"
    runs: list[str] = field(default_factory=list)
    max_volumes: int | None = None
    host: str = "127.0.0.1"
    base_port: int = 5550
    launcher: str = "process"
    max_restarts: int = 3
    background_nice: int = 5
    fuse_stages: bool = True
    fuse_source: bool | None = None  # None: where the stages are fused
    pin_cpus: bool = True
    train_epochs: int | None = None
    quiet: bool = False
    markers: str | None = None
    lsl_results: str | None = None
    recon: str = "auto"
    recon_models: str | None = None
    generator: str | None = None
    vae: str | None = None
    recon_steps: int = 4
    recon_strength: float = 0.85
    prior_steps: int = 10
    recon_seed: int = 0
    recon_device: str | None = None
    recon_dtype: str = "float32"
    scanner: str | None = None
    scanner_poll: bool = False
    run: str | None = None
    run_volumes: int | None = None
    scanner_idle: float = 60.0
    motion: str = "auto"
    motion_ref: str = "first"
    fd_threshold: float = 0.5
    keys: str | None = None
    key_name: str | None = None
    curve: bool = False
    subject: str | None = None
    session: str | None = None
    finetune: str = "off"
    finetune_budget: float | str = 60.0
    finetune_params: str = "lin0"
    finetune_holdout: str = "images"
    finetune_alphas: str | tuple[float, ...] | None = None
    finetune_verdict: str | None = None
    finetune_rehearsal: str | None = None
    finetune_l2sp: float | None = None

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
        check_choice(self.decode_precision, "decode_precision", ("auto", *DECODE_PRECISIONS))
        if self.decode_precision == "auto":  # resolved here, so the session records the choice
            self.decode_precision = "int8" if self.device == "cpu" else "fp32"
        if self.decode_precision == "int8" and self.device != "cpu":
            raise ConfigError(
                f"'decode_precision' int8 runs on the CPU only, got --device {self.device!r}: "
                "use fp32 on a GPU"
            )
        self.base_port = check_number(
            self.base_port, "base_port", minimum=1024, maximum=65536 - N_ADDRESSES, integer=True
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
        self.max_restarts = check_number(
            self.max_restarts, "max_restarts", minimum=0, maximum=100, integer=True
        )
        self.background_nice = check_number(
            self.background_nice, "background_nice", minimum=0, maximum=19, integer=True
        )
        for flag in ("fuse_stages", "pin_cpus"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"'{flag}' must be true or false, got {getattr(self, flag)!r}")
        if self.fuse_source is not None and not isinstance(self.fuse_source, bool):
            raise ConfigError(f"'fuse_source' must be true or false, got {self.fuse_source!r}")
        if self.fuse_source and not self.fuse_stages:
            raise ConfigError(
                "--fuse-source puts the source in the fused stage's process: it needs "
                "--fuse-stages (the default), not --no-fuse-stages"
            )
        if not isinstance(self.replay, str) or not self.replay:
            raise ConfigError(f"'replay' must be a dataset name or path, got {self.replay!r}")
        _check_device(self.device, "device")
        self._check_lsl()
        self._check_recon()
        self._check_scanner()
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError(f"'host' must be an interface address, got {self.host!r}")
        self._check_keys()
        for key in ("subject", "session"):  # the record's BIDS labels (default: preparation's)
            if getattr(self, key) is not None:
                check_label(getattr(self, key), key)
        self.finetune, self.finetune_budget, self.finetune_params = check_finetune(
            self.finetune, self.finetune_budget, self.finetune_params, self.finetune_holdout
        )
        self.finetune_alphas, self.finetune_verdict = check_finetune_choice(
            self.finetune_alphas, self.finetune_verdict
        )
        self.finetune_rehearsal, self.finetune_l2sp = check_finetune_anchor(
            self.finetune_rehearsal, self.finetune_l2sp
        )

    def _check_keys(self) -> None:
        """Links that leave loopback (or ``curve``) need a key directory: say so before any
        work."""
        if self.keys is not None and (not isinstance(self.keys, str) or not self.keys):
            raise ConfigError(f"'keys' must be a key directory path, got {self.keys!r}")
        if self.key_name is not None:
            check_key_name(self.key_name, "key_name")
        if not isinstance(self.curve, bool):
            raise ConfigError(f"'curve' must be true or false, got {self.curve!r}")
        if self.keys is None and self.curve_required:
            why = (
                "'curve' is on"
                if self.curve
                else f"links leave loopback ({remote_addresses(self.addresses().values())[0]})"
            )
            raise ConfigError(
                f"{why}, so every link must be authenticated with CURVE keys and none are "
                "given: make this machine's key pair with `mindeye-rt keys DIR`, then pass "
                "--keys DIR (or bind loopback only: --host 127.0.0.1)"
            )

    @property
    def curve_required(self) -> bool:
        """True when the session's sockets use CURVE: forced (``curve``, or ``keys`` given), or
        a link leaves loopback."""
        forced = self.curve or self.keys is not None
        return forced or bool(remote_addresses(self.addresses().values()))

    def security(self) -> CurveSecurity | None:
        """This machine's CURVE settings when :attr:`curve_required` (keys read and checked
        now), else None: loopback sessions need no keys."""
        if not self.curve_required:
            return None
        return CurveSecurity.load(self.keys, self.key_name)

    def _check_lsl(self) -> None:
        """``markers`` is ``lsl[:NAME]``; ``lsl_results`` a stream name prefix (on with
        ``markers`` unless given)."""
        from realtime.lsl_results import check_results_prefix

        if self.markers is not None:
            from realtime.lsl_markers import parse_markers_option

            parse_markers_option(self.markers)
        if self.lsl_results is not None:
            check_results_prefix(self.lsl_results)

    def _check_recon(self) -> None:
        resolve_mode(self.recon, self.generator)
        if self.recon_device is not None:
            _check_device(self.recon_device, "recon_device")
        for key in ("generator", "vae", "recon_models"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"'{key}' must be a directory path, got {value!r}")
        checked = check_recon_options(
            steps=self.recon_steps,
            strength=self.recon_strength,
            prior_steps=self.prior_steps,
            seed=self.recon_seed,
            dtype=self.recon_dtype,
            device=self.reconstruct_device,
        )
        self.recon_steps, self.recon_strength = checked["steps"], checked["strength"]
        self.prior_steps, self.recon_seed = checked["prior_steps"], checked["seed"]

    def _check_scanner(self) -> None:
        if self.scanner is not None and (not isinstance(self.scanner, str) or not self.scanner):
            raise ConfigError(
                f"'scanner' must be the scanner's export folder, got {self.scanner!r}"
            )
        for key in ("run", "run_volumes", "scanner_poll"):
            if self.scanner is None and getattr(self, key) not in (None, False):
                raise ConfigError(f"'{key}' applies to a scanner session: give --scanner DIR too")
        if self.run is not None:
            if not isinstance(self.run, str) or not self.run.strip():
                raise ConfigError(f"'run' must be a run name of the design, got {self.run!r}")
            if self.runs and self.runs != [self.run]:
                raise ConfigError("give either --run NAME (one run) or --runs, not both")
        if self.run_volumes is not None:
            self.run_volumes = check_number(
                self.run_volumes, "run_volumes", minimum=1, integer=True
            )
        self.scanner_idle = check_number(
            self.scanner_idle, "scanner_idle", minimum=0.1, maximum=86400, unit="seconds"
        )
        check_choice(self.motion, "motion", MOTION_CHOICES)
        ref = self.motion_ref
        if isinstance(ref, bool) or not isinstance(ref, (str, int)):
            raise ConfigError(
                f"'motion_ref' must be 'first', a volume number or a NIfTI, got {ref!r}"
            )
        self.motion_ref = str(ref)
        self.fd_threshold = check_number(
            self.fd_threshold, "fd_threshold", minimum=0, strict_min=True, maximum=50, unit="mm"
        )

    @property
    def recon_mode(self) -> str:
        """The reconstruction mode run: ``auto`` is ``full`` with a generator, else
        ``lowlevel``."""
        return resolve_mode(self.recon, self.generator)

    @property
    def source_in_fused(self) -> bool:
        """Whether the source runs in the fused stage's process (``fuse_source``, by default
        wherever the stages are fused: :mod:`realtime.stages.fused_source`)."""
        return self.fuse_stages if self.fuse_source is None else self.fuse_source

    @property
    def reconstruct_device(self) -> str:
        """Where reconstruction runs (``recon_device``, else ``device``)."""
        return self.recon_device or self.device

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
            "reconstruct",
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
