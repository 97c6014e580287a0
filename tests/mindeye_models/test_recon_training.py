"""First-use training of the reconstruction models: only the parts a session needs, cached,
with progress for every phase and held-out figures."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import mindeye_models.autoencoders as autoencoders
import mindeye_models.lowlevel as lowlevel
import mindeye_models.prior_training as prior_training
from mindeye_models.recon_bundle import load_bundle
from mindeye_models.recon_training import ReconTrainConfig, ensure_recon_models
from rt_base.errors import ConfigError
from tests.conftest import FAST_RECON

#: seconds, not a useful model: for tests of what is trained when
QUICK = ReconTrainConfig(prior_preset="tiny", prior_epochs=1, ae_steps=20, head_epochs=2)


def _refuse(what: str):
    def refuse(*args, **kwargs):
        raise AssertionError(f"{what} must not be trained again")

    return refuse


def test_bundle_is_cached_with_held_out_figures(tiny_dataset, tiny_model, tiny_recon):
    lines = []
    for with_prior in (True, False):  # a lowlevel session finds the same bundle
        again = ensure_recon_models(
            tiny_dataset,
            tiny_model,
            models_dir=tiny_recon.parent,
            with_prior=with_prior,
            config=ReconTrainConfig(**FAST_RECON),
            progress=False,
            log=lines.append,
        )
        assert again == tiny_recon
    assert lines == [f"using the cached reconstruction models {tiny_recon}"] * 2
    bundle = load_bundle(tiny_recon)
    assert bundle.info["n_val"] == 40 and bundle.info["checkpoint"] == str(tiny_model)
    low, prior = bundle.part_info["lowlevel"], bundle.part_info["prior"]
    # the held-out blurry images resemble their own images more than others'
    assert low["val_blurry"]["pixcorr"] > low["val_blurry"]["pixcorr_shuffled"] + 0.2
    # the trained prior moves the backbone's tokens towards the CLIP targets
    assert prior["training"] == "after"
    assert prior["val_class_cosine_prior"] > prior["val_class_cosine_backbone"] + 0.2


def test_a_lowlevel_session_trains_no_prior_and_a_full_one_adds_it(
    tiny_dataset, tiny_model, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(prior_training, "train_prior", _refuse("the prior (lowlevel session)"))
    lines = []
    kwargs = dict(models_dir=tmp_path, config=QUICK, log=lines.append)
    path = ensure_recon_models(tiny_dataset, tiny_model, with_prior=False, **kwargs)
    low = load_bundle(path)
    assert low.parts == ("lowlevel",) and "prior" not in low.part_info
    assert any(line.startswith("training the tiny autoencoder on ") for line in lines)
    assert any(line.startswith("training the low-level head on ") for line in lines)
    err = capsys.readouterr().err  # every phase shows its epochs and loss
    assert "train autoencoder" in err and "train low-level head" in err and "loss=" in err

    monkeypatch.undo()
    monkeypatch.setattr(autoencoders, "train_autoencoder", _refuse("the autoencoder"))
    monkeypatch.setattr(lowlevel, "train_lowlevel_head", _refuse("the low-level head"))
    lines.clear()
    assert ensure_recon_models(tiny_dataset, tiny_model, with_prior=True, **kwargs) == path
    assert lines[0] == f"adding the prior to {path.name}"
    assert any(line.startswith("training the diffusion prior (tiny)") for line in lines)
    assert "train prior" in capsys.readouterr().err
    full = load_bundle(path)
    assert full.parts == ("lowlevel", "prior") and full.part_info["prior"]["training"] == "after"
    for name, value in low.head.state_dict().items():  # the low-level part was kept as it was
        assert torch.equal(full.head.state_dict()[name], value)
    assert full.part_info["lowlevel"] == low.part_info["lowlevel"]

    # another prior recipe retrains the prior only; the same one is found in the cache
    lines.clear()
    kwargs["config"] = dataclasses.replace(QUICK, prior_epochs=2)
    assert ensure_recon_models(tiny_dataset, tiny_model, progress=False, **kwargs) == path
    assert load_bundle(path).part_info["prior"]["recipe"]["prior_epochs"] == 2
    assert ensure_recon_models(tiny_dataset, tiny_model, progress=False, **kwargs) == path
    assert lines[-1] == f"using the cached reconstruction models {path}"


def test_the_jointly_trained_prior_is_taken_not_trained(tiny_dataset, tmp_path, monkeypatch):
    """`train --prior joint`: the model cache saves the prior it trained with the backbone;
    the reconstruction models take it (a later stream finds them)."""
    from mindeye_models.model_cache import ensure_model

    models = tmp_path / "models"
    ckpt = ensure_model(
        tiny_dataset, models_dir=models, preset="tiny", epochs=3, progress=False, joint_prior=True
    )
    monkeypatch.setattr(prior_training, "train_prior", _refuse("a joint prior"))
    lines = []
    kwargs = dict(models_dir=models, config=QUICK, progress=False, log=lines.append)
    bundle = ensure_recon_models(tiny_dataset, ckpt, **kwargs)
    prior_info = load_bundle(bundle).part_info["prior"]
    assert prior_info["training"] == "joint" and "final_loss" not in prior_info
    assert "val_class_cosine_prior" in prior_info
    assert any("using the prior trained jointly" in line for line in lines)
    assert ensure_recon_models(tiny_dataset, ckpt, **kwargs) == bundle
    assert lines[-1] == f"using the cached reconstruction models {bundle}"


def test_too_few_trials_or_another_subject_are_refused(tiny_dataset, tiny_model, tmp_path):
    class Few:
        meta = tiny_dataset.meta

        def training_responses(self):
            responses, ids = tiny_dataset.training_responses()
            return responses[:9], ids[:9]

    with pytest.raises(ConfigError, match="at least 10"):
        ensure_recon_models(Few(), tiny_model, models_dir=tmp_path)

    class Other(Few):
        def training_responses(self):
            responses, ids = tiny_dataset.training_responses()
            return responses[:, :-1], ids

    with pytest.raises(ConfigError, match="use a checkpoint of this subject"):
        ensure_recon_models(Other(), tiny_model, models_dir=tmp_path)


def test_train_config_checks_its_values():
    with pytest.raises(ConfigError, match="'prior_epochs'"):
        ReconTrainConfig(prior_epochs=0)
    with pytest.raises(ConfigError, match="'prior_preset'"):
        ReconTrainConfig(prior_preset="huge")
    assert set(QUICK.recipe("lowlevel")) == {
        "ae_steps",
        "head_epochs",
        "head_hidden",
        "val_fraction",
        "seed",
    }
    assert "ae_steps" not in QUICK.recipe("prior") and "prior_lr" in QUICK.recipe("prior")


def test_the_seed_decides_the_low_level_part(tiny_dataset, tiny_model, tmp_path):
    torch.manual_seed(123)  # whatever the global RNG holds
    a = load_bundle(
        ensure_recon_models(
            tiny_dataset,
            tiny_model,
            models_dir=tmp_path / "a",
            with_prior=False,
            config=QUICK,
            progress=False,
        )
    )
    torch.manual_seed(456)
    b = load_bundle(
        ensure_recon_models(
            tiny_dataset,
            tiny_model,
            models_dir=tmp_path / "b",
            with_prior=False,
            config=QUICK,
            progress=False,
        )
    )
    for name, value in a.head.state_dict().items():
        assert torch.equal(b.head.state_dict()[name], value), name
    for name, value in a.autoencoder.state_dict().items():
        assert torch.equal(b.autoencoder.state_dict()[name], value), name
