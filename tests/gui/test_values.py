"""The session model's value helpers (:mod:`gui.values`): lenient reads, image checks,
display ranges, slice positions."""

from __future__ import annotations

import numpy as np
import pytest

from gui.values import (
    as_float,
    as_int,
    describe_array,
    is_affine,
    is_rgb,
    robust_levels,
    slice_position,
    status_behind,
)


@pytest.mark.parametrize(
    ("value", "as_i", "as_f"),
    [(3, 3, 3.0), ("4", 4, 4.0), (2.7, 2, 2.7), ("2.5", None, 2.5), (True, None, None),
     (None, None, None), ("x", None, None), ([1], None, None)],
)  # fmt: skip
def test_numbers_are_read_leniently(value, as_i, as_f):
    assert as_int(value) == as_i and as_float(value) == as_f


def test_status_behind_reads_the_backlog_and_its_age():
    assert status_behind({"backlog": 3, "behind_s": 4.24}) == "3 trials behind (4.2 s)"
    assert status_behind({"backlog": "1"}) == "1 trial behind"
    assert status_behind({"backlog": 0, "behind_s": 9}) == status_behind({}) == ""


def test_images_must_be_non_empty_rgb_uint8():
    assert is_rgb(np.zeros((2, 3, 3), np.uint8))
    for bad in (np.zeros((2, 3, 3), np.float32), np.zeros((2, 3), np.uint8),
                np.zeros((0, 3, 3), np.uint8), [[[0, 0, 0]]], None):  # fmt: skip
        assert not is_rgb(bad)
    assert describe_array(np.zeros((8, 8), np.float32)) == "float32 (8, 8)"
    assert describe_array(None) == "none" and describe_array([1]) == "list"


def test_an_affine_is_four_by_four_numbers():
    assert is_affine(np.eye(4).tolist())
    assert not is_affine(np.eye(3)) and not is_affine("eye") and not is_affine([[1, "a"]] * 4)


def test_display_levels_ignore_zeros_and_never_collapse():
    vol = np.zeros((10, 10, 10), np.float32)
    assert robust_levels(vol) == (0.0, 1.0)
    vol[:5] = 7.0
    assert robust_levels(vol) == (7.0, 8.0)
    vol = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    lo, hi = robust_levels(vol)
    assert 0 < lo < 50 and 950 < hi < 1000


def test_slices_cut_where_the_roi_is_largest():
    mask = np.zeros((6, 8, 4), bool)
    assert slice_position(mask) == (3, 4, 2)
    mask[1, 2:6, 1:3] = True
    mask[4, 5, 3] = True
    assert slice_position(mask) == (1, 5, 1)
