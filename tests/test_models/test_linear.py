"""Linear layers through oneDNN: torch's values and gradients, on the path that runs them."""
import pytest
import torch
import torch.nn.functional as F
from mmcv.cnn.bricks.wrappers import Linear as MMCVLinear
from torch import nn

from openseg_core.models.layers import OneDNNLinear, convert_linear, onednn_linear
from openseg_core.models.layers.linear import MIN_ROWS_INFERENCE, MIN_ROWS_TRAINING

pytestmark = pytest.mark.usefixtures('single_thread')


def _count_convolutions(fn) -> int:
    with torch.profiler.profile() as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key == 'aten::convolution')


@pytest.mark.parametrize('shape', [(MIN_ROWS_TRAINING, 24), (3, 100, 24)])
def test_onednn_linear_gives_torch_values_and_gradients(shape):
    torch.manual_seed(0)
    # A transposed input: not viewable as rows, so the layer must copy, not misread it.
    x = torch.randn(*shape[:-1], shape[-1]).transpose(-1, -2).contiguous().transpose(-1, -2)
    x.requires_grad_(True)
    weight = torch.randn(40, 24, requires_grad=True)
    bias = torch.randn(40, requires_grad=True)
    expected = F.linear(x, weight, bias)
    grads_expected = torch.autograd.grad(expected.square().sum(), (x, weight, bias))
    out = onednn_linear(x, weight, bias)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    for grad, grad_expected in zip(torch.autograd.grad(out.square().sum(), (x, weight, bias)),
                                   grads_expected):
        torch.testing.assert_close(grad, grad_expected, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(onednn_linear(x, weight), F.linear(x, weight),
                                   rtol=1e-5, atol=1e-5)


def test_onednn_linear_takes_the_convolution_only_for_enough_rows():
    weight = torch.randn(8, 16)
    with torch.no_grad():
        assert _count_convolutions(
            lambda: onednn_linear(torch.randn(MIN_ROWS_INFERENCE, 16), weight)) == 1
        assert _count_convolutions(
            lambda: onednn_linear(torch.randn(MIN_ROWS_INFERENCE - 1, 16), weight)) == 0
        assert _count_convolutions(
            lambda: onednn_linear(torch.randn(MIN_ROWS_INFERENCE, 16).double(),
                                  weight.double())) == 0
    trained = weight.clone().requires_grad_(True)
    assert _count_convolutions(
        lambda: onednn_linear(torch.randn(MIN_ROWS_TRAINING - 1, 16), trained)) == 0
    assert _count_convolutions(
        lambda: onednn_linear(torch.randn(MIN_ROWS_TRAINING, 16), trained)) == 1


def test_convert_linear_swaps_plain_layers_and_keeps_the_state_dict():
    class Lora(nn.Linear):  # a subclass with its own forward
        pass

    model = nn.Sequential(nn.Linear(4, 5), MMCVLinear(5, 6), Lora(6, 6), nn.ReLU())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(MIN_ROWS_INFERENCE, 4)
    with torch.no_grad():
        expected = model(x)
        convert_linear(model)
        out = model(x)
    assert [type(m) for m in model] == [OneDNNLinear, OneDNNLinear, Lora, nn.ReLU]
    assert model.state_dict().keys() == state.keys()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
