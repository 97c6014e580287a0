"""The shared minibatch loop: reproducible, one step per batch, progress with the loss."""

from __future__ import annotations

import pytest
import torch

from mindeye_models.fitting import fit_epochs
from rt_base.errors import ConfigError


def _fit(seed: int = 0, **kwargs):
    torch.manual_seed(0)
    x = torch.randn(50, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    lin = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    steps = []

    def loss_of(idx):
        steps.append(len(idx))
        return ((lin(x[idx]).squeeze(1) - y[idx]) ** 2).mean()

    history = fit_epochs(
        loss_of,
        len(x),
        opt,
        batch_size=16,
        generator=torch.Generator().manual_seed(seed),
        **kwargs,
    )
    return history, lin.weight.detach().clone(), steps


def test_the_loop_is_reproducible_and_learns(capsys):
    a, wa, steps = _fit(epochs=20)
    b, wb, _ = _fit(epochs=20)
    assert a == b and torch.equal(wa, wb)
    assert len(a) == 20 and a[-1] < 0.01 * a[0]
    assert steps[:4] == [16, 16, 16, 2] and len(steps) == 80  # every row once per epoch
    _, wc, _ = _fit(seed=1, epochs=20)
    assert not torch.equal(wa, wc)  # another row order
    assert capsys.readouterr().err == ""  # no progress unless asked


def test_progress_shows_epochs_and_loss(capsys):
    _fit(epochs=3, desc="train thing", progress=True)
    err = capsys.readouterr().err
    assert "train thing" in err and "3/3" in err and "loss=" in err


def test_bad_sizes_are_refused():
    with pytest.raises(ConfigError, match="'epochs'"):
        _fit(epochs=0)
    with pytest.raises(ConfigError, match="'n_rows'"):
        fit_epochs(lambda idx: None, 0, None, epochs=1, batch_size=1, generator=None)
