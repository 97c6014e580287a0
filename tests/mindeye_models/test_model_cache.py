"""The model cache: a checkpoint per dataset and preset, trained once and found again."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

import mindeye_models.model_cache as model_cache
from mindeye_models.checkpoint import load_checkpoint, read_sidecar
from mindeye_models.recon_bundle import load_bundle
from rt_base.errors import ConfigError

V = 48


@dataclass
class FakeMeta:
    name: str
    n_voxels: int


class FakeDataset:
    """The parts of a replay dataset that ensure_model uses."""

    def __init__(self, name="fake-subj", n_images=12, reps=3, seed=0):
        rng = np.random.default_rng(seed)
        self.meta = FakeMeta(name, V)
        self.images = rng.integers(0, 256, (n_images + 4, 16, 16, 3), dtype=np.uint8)
        self.ids = np.repeat(np.arange(4, n_images + 4), reps)
        self.responses = rng.standard_normal((len(self.ids), V)).astype(np.float32)

    def training_responses(self):
        return self.responses, self.ids

    def stimuli(self):
        return self.images

    def image_ids(self, split):
        return np.arange(4) if split == "test" else np.arange(4, len(self.images))


def test_ensure_model_trains_once_and_reuses_the_checkpoint(tmp_path, monkeypatch):
    ds = FakeDataset()
    messages = []
    path = model_cache.ensure_model(
        ds, models_dir=tmp_path, preset="tiny", epochs=2, progress=False, log=messages.append
    )
    assert path.is_file() and path.suffix == ".safetensors" and "fake-subj" in path.name
    model, extra = load_checkpoint(path)
    assert model.config.n_voxels == V and model.config.embedder == "tiny-random"
    assert extra["dataset"] == "fake-subj" and extra["preset"] == "tiny"
    assert extra["n_trials"] == 36 and extra["train_config"]["epochs"] == 2
    assert len(extra["embedder_identity"]) == 16 and len(extra["data_fingerprint"]) == 16
    assert "training MindEye" in messages[0]

    def no_training(*args, **kwargs):
        raise AssertionError("a cached model must not be retrained")

    monkeypatch.setattr(model_cache, "train_mindeye", no_training)
    again = model_cache.ensure_model(
        ds, models_dir=tmp_path, preset="tiny", epochs=2, progress=False
    )
    assert again == path
    # Other training data -> another checkpoint (so training is attempted).
    changed = FakeDataset(seed=1)
    with pytest.raises(AssertionError, match="must not be retrained"):
        model_cache.ensure_model(
            changed, models_dir=tmp_path, preset="tiny", epochs=2, progress=False
        )
    with pytest.raises(AssertionError, match="must not be retrained"):
        model_cache.ensure_model(
            ds, models_dir=tmp_path, preset="tiny", epochs=2, progress=False, force=True
        )


def test_ensure_model_rejects_a_bad_preset(tmp_path):
    with pytest.raises(ConfigError, match="'preset'"):
        model_cache.ensure_model(FakeDataset(), models_dir=tmp_path, preset="huge")


def test_data_fingerprint_follows_every_input():
    ds = FakeDataset()
    base = model_cache.data_fingerprint(ds.responses, ds.ids, "images")
    assert len(base) == 16 and base == model_cache.data_fingerprint(
        ds.responses.copy(), list(ds.ids), "images"
    )
    changed = ds.responses.copy()
    changed[-1, -1] += 1.0  # the last row of the last chunk
    ids = ds.ids.copy()
    ids[0] = 99
    others = {
        model_cache.data_fingerprint(changed, ds.ids, "images"),
        model_cache.data_fingerprint(ds.responses, ids, "images"),
        model_cache.data_fingerprint(ds.responses, ds.ids, "other images"),
    }
    assert base not in others and len(others) == 3


def test_a_joint_prior_is_saved_next_to_its_checkpoint(tmp_path):
    """``train --prior joint``: the prior trained with the backbone becomes a prior-only
    reconstruction bundle that the checkpoint's sidecar names; without it the checkpoint is
    not reused."""
    ds = FakeDataset()
    path = model_cache.ensure_model(
        ds, models_dir=tmp_path, preset="tiny", epochs=2, progress=False, joint_prior=True
    )
    extra = read_sidecar(path)["extra"]
    assert extra["joint_prior"] is True
    joint = path.parent / extra["joint_prior_file"]
    bundle = load_bundle(joint)
    assert bundle.parts == ("prior",) and bundle.part_info["prior"]["training"] == "joint"
    assert bundle.token_shape == bundle.prior.config.token_shape == (17, 128)
    lines = []
    again = model_cache.ensure_model(
        ds,
        models_dir=tmp_path,
        preset="tiny",
        epochs=2,
        progress=False,
        joint_prior=True,
        log=lines.append,
    )
    assert again == path and lines == [f"using the cached MindEye model {path}"]
    joint.unlink()
    model_cache.ensure_model(
        ds,
        models_dir=tmp_path,
        preset="tiny",
        epochs=2,
        progress=False,
        joint_prior=True,
        log=lines.append,
    )
    assert "training MindEye" in lines[-2] and joint.is_file()


def test_the_cache_is_content_addressed_not_named(tmp_path, monkeypatch):
    """Two datasets of different names with the same training data share one checkpoint
    (a moving twin of a subject does not retrain it); other data get another."""
    path = model_cache.ensure_model(
        FakeDataset(name="subj-a"), models_dir=tmp_path, preset="tiny", epochs=2, progress=False
    )
    assert "subj-a" in path.name and read_sidecar(path)["extra"]["dataset"] == "subj-a"

    def no_training(*args, **kwargs):
        raise AssertionError("a cached model must not be retrained")

    monkeypatch.setattr(model_cache, "train_mindeye", no_training)
    lines = []
    twin = model_cache.ensure_model(
        FakeDataset(name="subj-a-moving"),
        models_dir=tmp_path,
        preset="tiny",
        epochs=2,
        progress=False,
        log=lines.append,
    )
    assert twin == path and lines == [f"using the cached MindEye model {path}"]
    other_data = FakeDataset(name="subj-a-moving", seed=1)
    for ds, epochs in ((other_data, 2), (FakeDataset(name="subj-a"), 3)):  # other data, options
        with pytest.raises(AssertionError, match="must not be retrained"):
            model_cache.ensure_model(
                ds, models_dir=tmp_path, preset="tiny", epochs=epochs, progress=False
            )
    assert list(tmp_path.glob("*.safetensors")) == [path]
