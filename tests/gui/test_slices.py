"""The console's slice views (:mod:`gui.slices`): orientation letters and planes."""

from __future__ import annotations

import numpy as np

from gui.slices import axis_codes, slice_of


def test_axis_codes_from_the_affine():
    assert axis_codes(np.eye(4)) == ("R", "A", "S")
    flipped = np.diag([-2.0, 2.0, 2.0, 1.0])
    assert axis_codes(flipped.tolist()) == ("L", "A", "S")
    assert axis_codes(None) is None and axis_codes(np.zeros((4, 4))) is None


def test_a_slice_is_the_plane_along_an_axis_clipped_to_the_grid():
    vol = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    np.testing.assert_array_equal(slice_of(vol, 2, 1), vol[:, :, 1])
    np.testing.assert_array_equal(slice_of(vol, 0, 9), vol[1])
    assert slice_of(vol, 1, -3).shape == (2, 4)
