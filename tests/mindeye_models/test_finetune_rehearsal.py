"""Rehearsal with the trials the starting model was trained on, and the L2-SP penalty: the
file format's checks and errors, and what a step does with them."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch

from mindeye_models.bank import ImageBank
from mindeye_models.finetune import finetune_step, trained_parameters, validate
from mindeye_models.finetune_config import FinetuneConfig
from mindeye_models.finetune_rehearsal import (
    check_rehearsal_file,
    read_rehearsal,
    rehearsal_record,
    write_rehearsal,
)
from mindeye_models.model import MindEye
from mindeye_models.presets import get_preset
from rt_base.errors import ConfigError

N_VOXELS = 40


def _images(rng, ids, cfg):
    tokens = rng.normal(size=(len(ids), cfg.n_tokens, cfg.clip_dim)).astype(np.float32)
    codes = rng.normal(size=(len(ids), N_VOXELS)).astype(np.float32)
    return ImageBank(np.asarray(ids), tokens), codes


def _trials(rng, bank, codes, n):
    rows = rng.integers(0, len(bank), n)
    noise = 0.1 * rng.normal(size=(n, N_VOXELS)).astype(np.float32)
    return codes[rows] + noise, bank.ids[rows]


def _two_sessions(seed: int = 0):
    """A first session (images 200-207) and today's session (other images, 100-103), each a
    fixed linear code of its images plus noise; an untrained tiny model."""
    rng = np.random.default_rng(seed)
    cfg = get_preset("tiny", n_voxels=N_VOXELS)
    first_bank, first_codes = _images(rng, np.arange(200, 208), cfg)
    today_bank, today_codes = _images(rng, np.arange(100, 104), cfg)
    first = _trials(rng, first_bank, first_codes, 96)
    first_test = _trials(rng, first_bank, first_codes, 40)  # new showings of the first images
    today = _trials(rng, today_bank, today_codes, 48)
    torch.manual_seed(seed)
    return MindEye(cfg).eval(), cfg, first_bank, first, first_test, today_bank, today


def test_a_file_round_trips_and_is_recorded_by_path_and_content(tmp_path):
    _, cfg, bank, (voxels, ids), _, _, _ = _two_sessions()
    path = write_rehearsal(tmp_path / "r.npz", voxels, ids, bank, "tiny-random")
    headers = check_rehearsal_file(path)
    assert headers["voxels"] == ((96, N_VOXELS), np.dtype(np.float32))
    data = read_rehearsal(path, n_voxels=N_VOXELS, token_shape=bank.token_shape)
    assert np.array_equal(data.voxels, voxels) and np.array_equal(data.image_ids, ids)
    assert np.array_equal(data.bank.lookup(ids), bank.lookup(ids)) and len(data) == 96
    record = rehearsal_record(path)
    assert record["sha256"] == data.sha256 and len(record["sha256"]) == 64
    assert record["n_trials"] == 96 and record["n_voxels"] == N_VOXELS
    half = write_rehearsal(tmp_path / "h.npz", voxels, ids, bank, "tiny-random", dtype=np.float16)
    assert half.stat().st_size < 0.6 * path.stat().st_size
    np.testing.assert_allclose(read_rehearsal(half).voxels, voxels, atol=1e-2)


def test_a_changed_missing_or_malformed_file_is_refused_with_what_is_wrong(tmp_path):
    _, cfg, bank, (voxels, ids), _, _, _ = _two_sessions()
    path = write_rehearsal(tmp_path / "r.npz", voxels, ids, bank, "tiny-random")
    sha = rehearsal_record(path)["sha256"]
    with pytest.raises(ConfigError, match="does not exist"):
        check_rehearsal_file(tmp_path / "nope.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ConfigError, match="not an .npz"):
        check_rehearsal_file(tmp_path / "text.npz")
    with pytest.raises(ConfigError, match="voxels"):
        read_rehearsal(path, n_voxels=N_VOXELS + 1)
    with pytest.raises(ConfigError, match="embedder"):
        read_rehearsal(path, embedder="ViT-L-14")
    with pytest.raises(ConfigError, match="embeddings of shape"):
        read_rehearsal(path, token_shape=(1, 2))

    def npz(name, **changes):
        with np.load(path) as data:
            arrays = {**{k: data[k] for k in data.files}, **changes}
        arrays = {k: v for k, v in arrays.items() if v is not None}
        with open(tmp_path / name, "wb") as fh:
            np.savez(fh, **arrays)
        return tmp_path / name

    with pytest.raises(ConfigError, match=r"lacks the array\(s\) \['targets'\]"):
        check_rehearsal_file(npz("a.npz", targets=None))
    with pytest.raises(ConfigError, match="one row per image id"):
        check_rehearsal_file(npz("b.npz", voxels=voxels[:10]))
    with pytest.raises(ConfigError, match="2-d float16 or float32"):
        check_rehearsal_file(npz("c.npz", voxels=voxels.astype(np.float64)))
    with pytest.raises(ConfigError, match="no embedding"):
        read_rehearsal(npz("d.npz", image_ids=ids + 1000))
    with pytest.raises(ConfigError, match="format"):
        read_rehearsal(npz("e.npz", format=np.array("something-else")))
    with pytest.raises(ConfigError, match="not finite"):
        read_rehearsal(npz("f.npz", voxels=np.full_like(voxels, np.nan)))
    read_rehearsal(path, sha256=sha)  # unchanged: accepted
    write_rehearsal(path, voxels + 1, ids, bank, "tiny-random")
    with pytest.raises(ConfigError, match="changed since the session recorded it"):
        read_rehearsal(path, sha256=sha)
    with zipfile.ZipFile(path) as zf:  # the format is numpy's own: the arrays by name
        assert sorted(zf.namelist()) == sorted(
            f"{k}.npy"
            for k in ("format", "format_version", "embedder", "voxels", "image_ids")
            + ("target_ids", "targets")
        )


def test_a_step_with_rehearsal_keeps_the_first_sessions_images(tmp_path):
    """Trained on today's images only, the model knows nothing of the first session's; with
    rehearsal each batch also carries first-session trials, which it then retrieves."""
    model, cfg, first_bank, first, first_test, today_bank, today = _two_sessions()
    path = write_rehearsal(tmp_path / "r.npz", *first, first_bank, "tiny-random")
    rehearsal = read_rehearsal(path)
    step = FinetuneConfig(epochs=40, lr=3e-3, batch_size=8, holdout="trials", alphas=(1.0,))
    scores = {}
    for name, extra in (("plain", None), ("rehearsal", rehearsal)):
        copy = MindEye(cfg)
        copy.load_state_dict(model.state_dict())
        result = finetune_step(copy.eval(), *today, today_bank, step, rehearsal=extra)
        assert result.batches_run == 40 * (result.n_train // 8), result
        assert result.n_rehearsal == (96 if extra else 0)
        scores[name] = validate(copy, *first_test, first_bank)["top1"]
    print(scores)
    assert scores["rehearsal"] >= scores["plain"] + 0.4, scores  # 8-way: chance 0.125
    wrong = read_rehearsal(path)
    wrong.voxels = wrong.voxels[:, :10]
    with pytest.raises(ConfigError, match="rehearsal trials have 10 voxels"):
        finetune_step(model, *today, today_bank, step, rehearsal=wrong)


def test_l2sp_keeps_the_trained_weights_near_where_the_step_started():
    model, cfg, _, _, _, today_bank, today = _two_sessions()
    drift = {}
    for l2sp in (0.0, 1e4):
        copy = MindEye(cfg)
        copy.load_state_dict(model.state_dict())
        start = [p.detach().clone() for p in trained_parameters(copy, "lin0")]
        step = FinetuneConfig(epochs=20, lr=3e-3, batch_size=8, holdout="trials", l2sp=l2sp)
        step = FinetuneConfig(**{**step.__dict__, "alphas": (1.0,)})
        finetune_step(copy.eval(), *today, today_bank, step)
        params = trained_parameters(copy, "lin0")
        drift[l2sp] = sum(
            float(((p.detach() - p0) ** 2).sum()) for p, p0 in zip(params, start, strict=True)
        )
        for p in copy.parameters():
            p.requires_grad_(True)
    print(drift)
    assert drift[1e4] < 0.2 * drift[0.0], drift


@pytest.mark.parametrize(
    "change, match",
    [
        ({"rehearsal_ratio": 0}, "rehearsal_ratio"),
        ({"rehearsal_ratio": 9}, "rehearsal_ratio"),
        ({"l2sp": -1}, "l2sp"),
        ({"l2sp": "a lot"}, "l2sp"),
    ],
)
def test_bad_rehearsal_and_l2sp_options_are_config_errors(change, match):
    with pytest.raises(ConfigError, match=match):
        FinetuneConfig(**change)
