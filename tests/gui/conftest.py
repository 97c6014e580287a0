"""Fixtures of the GUI tests: a tiny replay dataset and a model fed a run of it."""

from __future__ import annotations

import pytest

from gui.model import SessionModel
from tests.gui.synthetic import synthetic_stream, write_tiny_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("gui") / "ds", n_volumes=40, n_images=8)


@pytest.fixture
def model(dataset):
    model = SessionModel()
    model.feed_many(synthetic_stream(n_volumes=30, k=3, ways=6, dataset_path=str(dataset.root)))
    return model
