"""Parameters of the simulated subject: :class:`SimulationConfig`, its presets, its version.

The simulated subject generates NSD-like runs from a known (hidden) encoding model: anatomy in
:mod:`replay_data.simulation_geometry`, the encoding model in
:mod:`replay_data.simulation_encoding`, the trial schedules in
:mod:`replay_data.simulation_schedule`, the time series and the replay dataset in
:mod:`replay_data.simulate`.

SNR definition: for a voxel of median gain (``g_v = 1``), ``snr`` = std across images of the
evoked peak (``signal_pct``) / std of the per-TR noise.  The noise std is therefore
``signal_pct / snr`` percent of the voxel's baseline in every brain voxel; ``snr`` is the one
knob that scales the noise.

=====================  =================  ==================================================
parameter              subj01 default     meaning
=====================  =================  ==================================================
shape, voxel_size      81x104x83, 1.8 mm  volume grid (NSD func1pt8mm)
n_roi                  15724              ROI voxels (nsdgeneral of NSD subj01)
tr, n_volumes          1.6 s, 188         per run (300.8 s): 72 slots of 4 s, lead-out >= 8 s
lead_in_s              3.0 s              blank before the first trial slot
image_s, gap_s         3.0 s, 1.0 s       trial slot = image + gap (onsets 4 s apart)
trials_per_run         62                 image trials per run; other slots are blank
n_test_images          50                 test images, each shown test_reps times
test_reps              3                  repeats in different runs (3 test runs, 36 fillers)
n_train_images         1500               training images, each shown 1-3 times
n_train_trials         3000               training trials (-> 49 ROI-only runs)
snr                    0.4                see SNR definition above
signal_pct             1.0 %              std across images of the evoked peak (g_v = 1)
mean_response_pct      1.5 %              image-independent visual response (g_v = 1)
gain_sd                0.4                log-normal sd of the per-voxel gain g_v
n_semantic             64                 CLIP-token principal components encoded (whitened)
hrf_peak_mean / _sd    5.5 s / 0.6 s      per-voxel HRF time to peak (clipped at +-3 sd)
drift_pct              1.0 %              sd of each drift term (linear, quadratic, sinusoid
                                          of period 100-250 s); half shared by all voxels
ar1_rho                0.3                lag-1 autocorrelation of the per-TR noise
baseline               ~1000 a.u.         GM 1050, WM 850, CSF 1300, x bias field, 0 outside
embedder               tiny-random        image embedder of the semantic features
motion                 none               head motion of the test runs: "none" or
                                          "cooperative" (:mod:`replay_data.simulation_motion`)
motion_drift_mm        1.5 mm             largest slow drift in a run (each draws 50-100 %)
motion_jumps           2                  sudden jumps per test run
motion_jump_min/max_mm 0.5 / 1.0 mm       size of a jump's translation
motion_rot_deg_per_mm  0.4 deg/mm         rotation that comes with each mm of translation
=====================  =================  ==================================================

The motion fields matter only with ``motion="cooperative"`` (presets ``subj01-moving`` and
``tiny-moving``); the motion has its own random stream, so a moving subject and the still one of
the same seed share anatomy, encoding model, schedules, noise and training responses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from rt_base.checks import check_choice, check_number
from rt_base.errors import ConfigError

__all__ = [
    "MOTION_KINDS",
    "PRESETS",
    "SIMULATOR_VERSION",
    "SimulationConfig",
    "assign_test_images",
]


#: Bumped whenever the generative model changes, so a cached built-in subject is regenerated.
SIMULATOR_VERSION = 2

#: head-motion models of the simulated subject (:mod:`replay_data.simulation_motion`)
MOTION_KINDS: tuple[str, ...] = ("none", "cooperative")


def assign_test_images(n_test: int, reps: int, per_run: int) -> list[list[int]]:
    """Test image indices of each run; a repeat goes to another run whenever there are enough.

    Parameters
    ----------
    n_test : int
        Test images.
    reps : int
        Showings of each test image.
    per_run : int
        Image trials per run.

    Returns
    -------
    runs : list of lists of int
        Per run, the indices (``0 .. n_test - 1``) of the test images it shows.
    """
    n_runs = max(1, math.ceil(n_test * reps / per_run))
    while True:
        runs: list[list[int]] = [[] for _ in range(n_runs)]
        for r in range(reps):
            for i in range(n_test):
                runs[(i + r) % n_runs if n_runs >= reps else (i * reps + r) % n_runs].append(i)
        if max(len(r) for r in runs) <= per_run:
            return runs
        n_runs += 1


@dataclass(frozen=True)
class SimulationConfig:
    """Parameters of a simulated subject (see the module docstring's table)."""

    name: str = "subj01"
    seed: int = 1
    shape: tuple[int, int, int] = (81, 104, 83)
    voxel_size: float = 1.8
    n_roi: int = 15724
    tr: float = 1.6
    n_volumes: int = 188
    lead_in_s: float = 3.0
    image_s: float = 3.0
    gap_s: float = 1.0
    trials_per_run: int = 62
    n_test_images: int = 50
    test_reps: int = 3
    n_train_images: int = 1500
    n_train_trials: int = 3000
    snr: float = 0.4
    signal_pct: float = 1.0
    mean_response_pct: float = 1.5
    gain_sd: float = 0.4
    n_semantic: int = 64
    hrf_peak_mean: float = 5.5
    hrf_peak_sd: float = 0.6
    drift_pct: float = 1.0
    ar1_rho: float = 0.3
    embedder: str = "tiny-random"
    image_size: int = 128
    motion: str = "none"
    motion_drift_mm: float = 1.5
    motion_jumps: int = 2
    motion_jump_min_mm: float = 0.5
    motion_jump_max_mm: float = 1.0
    motion_rot_deg_per_mm: float = 0.4

    def __post_init__(self) -> None:
        num = check_number
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise ConfigError(f"'name' must be a non-empty folder name, got {self.name!r}")
        num(self.seed, "seed", minimum=0, integer=True)
        if not isinstance(self.shape, (tuple, list)) or len(self.shape) != 3:
            raise ConfigError(f"'shape' must be 3 integers (X, Y, Z), got {self.shape!r}")
        shape = tuple(int(num(s, "shape", minimum=8, integer=True)) for s in self.shape)
        object.__setattr__(self, "shape", shape)
        num(self.voxel_size, "voxel_size", minimum=0, strict_min=True, unit="mm")
        num(self.n_roi, "n_roi", minimum=1, integer=True)
        num(self.tr, "tr", minimum=0, strict_min=True, unit="seconds")
        num(self.n_volumes, "n_volumes", minimum=10, integer=True)
        num(self.lead_in_s, "lead_in_s", minimum=0, unit="seconds")
        num(self.image_s, "image_s", minimum=0, strict_min=True, unit="seconds")
        num(self.gap_s, "gap_s", minimum=0, unit="seconds")
        num(self.n_test_images, "n_test_images", minimum=2, integer=True)
        num(self.test_reps, "test_reps", minimum=1, integer=True)
        num(self.n_train_images, "n_train_images", minimum=1, integer=True)
        num(
            self.n_train_trials,
            "n_train_trials",
            minimum=self.n_train_images,
            maximum=3 * self.n_train_images,
            integer=True,
        )
        num(self.snr, "snr", minimum=0, strict_min=True)
        num(self.signal_pct, "signal_pct", minimum=0, strict_min=True, maximum=20, unit="%")
        num(self.mean_response_pct, "mean_response_pct", minimum=0, maximum=20, unit="%")
        num(self.gain_sd, "gain_sd", minimum=0, maximum=2)
        num(self.n_semantic, "n_semantic", minimum=1, integer=True)
        num(self.hrf_peak_mean, "hrf_peak_mean", minimum=3, maximum=9, unit="seconds")
        num(self.hrf_peak_sd, "hrf_peak_sd", minimum=0, maximum=2, unit="seconds")
        num(self.drift_pct, "drift_pct", minimum=0, maximum=20, unit="%")
        num(self.ar1_rho, "ar1_rho", minimum=0, maximum=0.95)
        check_choice(self.embedder, "embedder", ("tiny-random",))  # needs no weights file
        num(self.image_size, "image_size", minimum=32, integer=True)
        if self.image_size % 8:
            raise ConfigError(f"'image_size' must be a multiple of 8, got {self.image_size}")
        num(self.trials_per_run, "trials_per_run", minimum=1, maximum=self.n_slots, integer=True)
        self._check_motion()

    def _check_motion(self) -> None:
        num = check_number
        check_choice(self.motion, "motion", MOTION_KINDS)
        num(self.motion_drift_mm, "motion_drift_mm", minimum=0, maximum=10, unit="mm")
        jumps_max = min(50, self.n_volumes - 1)
        num(self.motion_jumps, "motion_jumps", minimum=0, maximum=jumps_max, integer=True)
        num(self.motion_jump_min_mm, "motion_jump_min_mm", minimum=0, maximum=10, unit="mm")
        num(self.motion_jump_max_mm, "motion_jump_max_mm", minimum=0, maximum=10, unit="mm")
        if self.motion_jump_max_mm < self.motion_jump_min_mm:
            raise ConfigError(
                f"'motion_jump_max_mm' must be at least 'motion_jump_min_mm' "
                f"({self.motion_jump_min_mm} mm), got {self.motion_jump_max_mm}"
            )
        num(self.motion_rot_deg_per_mm, "motion_rot_deg_per_mm", minimum=0, maximum=2)

    @property
    def trial_s(self) -> float:
        """Seconds per trial slot (image + gap)."""
        return self.image_s + self.gap_s

    @property
    def n_slots(self) -> int:
        """Trial slots per run: lead-in, slots, and >= 8 s lead-out fit in the run."""
        run_s = self.n_volumes * self.tr
        return max(0, int(math.floor((run_s - self.lead_in_s - 8.0) / self.trial_s + 1e-9)))

    @property
    def n_test_runs(self) -> int:
        """Runs of the test session (the replayed runs)."""
        return len(assign_test_images(self.n_test_images, self.test_reps, self.trials_per_run))

    @property
    def n_filler(self) -> int:
        """Filler trials (each a distinct non-test image) that complete the test runs."""
        return self.n_test_runs * self.trials_per_run - self.n_test_images * self.test_reps

    @classmethod
    def subj01(cls, **overrides) -> SimulationConfig:
        """The built-in simulated NSD subj01 (the defaults)."""
        return replace(cls(), **overrides)

    @classmethod
    def subj02(cls, **overrides) -> SimulationConfig:
        """A second simulated subject for fine-tuning between runs: its own anatomy and voxel
        tuning (another seed, gain spread and HRF), a smaller ROI, a short first session (744
        training trials, 12 runs) and a test session of 4 runs in which each of 100 test images
        is shown twice, in consecutive runs: from run 2 on, half of a run's test trials repeat an
        image of the run before and half show it for the first time."""
        base = dict(
            name="subj02",
            seed=2,
            n_roi=12000,
            gain_sd=0.5,
            hrf_peak_mean=5.0,
            n_test_images=100,
            test_reps=2,
            n_train_images=600,
            n_train_trials=744,
        )
        return replace(cls(), **{**base, **overrides})

    @classmethod
    def tiny(cls, **overrides) -> SimulationConfig:
        """A few-second subject for tests: 20x24x20 grid, 600 ROI voxels, one 20-trial run."""
        base = cls(
            name="tiny",
            seed=7,
            shape=(20, 24, 20),
            n_roi=600,
            n_volumes=60,
            trials_per_run=20,
            n_test_images=6,
            test_reps=3,
            n_train_images=200,
            n_train_trials=400,
            snr=1.0,
            n_semantic=16,
            image_size=64,
        )
        return replace(base, **overrides)

    @classmethod
    def subj01_moving(cls, **overrides) -> SimulationConfig:
        """subj01 with a cooperative participant's head motion in its test runs."""
        return cls.subj01(**{"name": "subj01-moving", "motion": "cooperative", **overrides})

    @classmethod
    def tiny_moving(cls, **overrides) -> SimulationConfig:
        """The tiny subject with head motion (for tests)."""
        return cls.tiny(**{"name": "tiny-moving", "motion": "cooperative", **overrides})

    @classmethod
    def from_dict(cls, d: dict) -> SimulationConfig:
        """Build from a dict; unknown keys raise ConfigError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown simulation options {unknown}; known: {sorted(known)}")
        return cls(**d)


PRESETS = {
    "subj01": SimulationConfig.subj01,
    "subj01-moving": SimulationConfig.subj01_moving,
    "subj02": SimulationConfig.subj02,
    "tiny": SimulationConfig.tiny,
    "tiny-moving": SimulationConfig.tiny_moving,
}
