import torch

from mindeye_models.images import resize_square


def test_resize_square_resizes_and_keeps_a_fitting_batch_as_is():
    x = torch.rand(2, 3, 32, 48)
    y = resize_square(x, 16)
    assert y.shape == (2, 3, 16, 16)
    assert torch.allclose(y.mean(), x.mean(), atol=0.05)
    same = torch.rand(1, 3, 16, 16)
    assert resize_square(same, 16) is same
    flat = torch.full((1, 3, 40, 40), 0.25)
    assert torch.allclose(resize_square(flat, 8), torch.full((1, 3, 8, 8), 0.25))
