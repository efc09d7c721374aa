"""Linear layers through oneDNN: torch's values and gradients, on the path that runs them."""
import copy
import io

import pytest
import torch
import torch.nn.functional as F
from mmcv.cnn.bricks.wrappers import Linear as MMCVLinear
from torch import nn

from openseg_core.models.layers import (InferenceCache, OneDNNLinear, convert_linear,
                                        inference_cache, linear, onednn_linear)
from openseg_core.models.layers.linear import (MIN_ROWS_INFERENCE, MIN_ROWS_POINTWISE,
                                               MIN_ROWS_TRAINING)

pytestmark = pytest.mark.usefixtures('single_thread')


def _count(fn, name: str) -> int:
    with torch.profiler.profile() as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key == name)


def _count_convolutions(fn) -> int:
    return _count(fn, 'aten::convolution')


def _count_inner_products(fn) -> int:
    return _count(fn, 'mkldnn::_linear_pointwise')


@pytest.fixture(params=[True, False], ids=['oneDNN training', 'MKL training'])
def training_products(request, monkeypatch):
    """Both routes of products with gradients, whichever this CPU's default is."""
    monkeypatch.setattr(linear, 'ONEDNN_TRAINING_PRODUCTS', request.param)
    return request.param


@pytest.mark.parametrize('shape', [(MIN_ROWS_TRAINING, 24), (3, 100, 24)])
def test_onednn_linear_gives_torch_values_and_gradients(shape, training_products):
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


def test_onednn_linear_picks_the_kernel_by_rows_gradients_and_layout(training_products):
    weight = torch.randn(8, 16)
    with torch.no_grad():
        assert _count_inner_products(
            lambda: onednn_linear(torch.randn(MIN_ROWS_POINTWISE, 16), weight)) == 1
        assert _count_inner_products(
            lambda: onednn_linear(torch.randn(MIN_ROWS_POINTWISE - 1, 16), weight)) == 0
        assert _count_inner_products(
            lambda: onednn_linear(torch.randn(MIN_ROWS_INFERENCE, 16).double(),
                                  weight.double())) == 0
        # A slice that starts inside its storage: the inner product through a module's
        # copies only, the convolution otherwise.
        stacked = torch.randn(16, 16)
        assert _count_convolutions(
            lambda: onednn_linear(torch.randn(MIN_ROWS_INFERENCE, 16), stacked[8:])) == 1
        assert _count_inner_products(
            lambda: onednn_linear(torch.randn(MIN_ROWS_INFERENCE, 16), stacked[8:],
                                  cache=InferenceCache())) == 1
    trained = weight.clone().requires_grad_(True)
    assert _count_convolutions(
        lambda: onednn_linear(torch.randn(MIN_ROWS_TRAINING - 1, 16), trained)) == 0
    # With gradients: oneDNN's convolution on AVX-512 CPUs, MKL's product elsewhere.
    assert _count_convolutions(
        lambda: onednn_linear(torch.randn(MIN_ROWS_TRAINING, 16), trained)) == int(
            training_products)
    assert _count_inner_products(
        lambda: onednn_linear(torch.randn(MIN_ROWS_TRAINING, 16), trained)) == 0


def test_cached_weight_copies_follow_in_place_changes_and_are_not_saved():
    torch.manual_seed(0)
    attn = nn.MultiheadAttention(16, 2, batch_first=True)
    x = torch.randn(MIN_ROWS_INFERENCE, 16)
    key_weight = attn.in_proj_weight[16:32]
    cache = inference_cache(attn)
    assert inference_cache(attn) is cache
    with torch.no_grad():
        torch.testing.assert_close(onednn_linear(x, key_weight, cache=cache),
                                   F.linear(x, key_weight), rtol=1e-5, atol=1e-5)
        attn.in_proj_weight.mul_(2)  # as an optimiser step or load_state_dict would
        torch.testing.assert_close(onednn_linear(x, key_weight, cache=cache),
                                   F.linear(x, key_weight), rtol=1e-5, atol=1e-5)
    # oneDNN's copies cannot be pickled: a deep copy or a saved module starts without them.
    clone = copy.deepcopy(attn)
    assert inference_cache(clone) is not cache
    buffer = io.BytesIO()
    torch.save(attn, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)  # the module this test just saved
    with torch.no_grad():
        torch.testing.assert_close(
            onednn_linear(x, loaded.in_proj_weight[16:32], cache=inference_cache(loaded)),
            F.linear(x, key_weight), rtol=1e-5, atol=1e-5)


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


def test_flop_formulas_count_the_inner_product_as_torch_counts_a_linear_layer():
    from torch.utils.flop_counter import FlopCounterMode

    from openseg_core.models.layers.linear import flop_formulas
    x, weight = torch.randn(2, MIN_ROWS_INFERENCE, 16), torch.randn(8, 16)
    counts = []
    for fn in (lambda: F.linear(x, weight), lambda: onednn_linear(x, weight)):
        with torch.no_grad(), FlopCounterMode(display=False,
                                              custom_mapping=flop_formulas()) as counter:
            fn()
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1] == 2 * 2 * MIN_ROWS_INFERENCE * 16 * 8


def test_a_trainable_bias_alone_still_gets_its_gradient():
    """The inner product has no backward: a frozen weight with a trained bias (BitFit) must
    not take it."""
    weight, bias = torch.randn(8, 16), torch.randn(8, requires_grad=True)
    x = torch.randn(MIN_ROWS_INFERENCE, 16)
    out = onednn_linear(x, weight, bias)
    (grad,) = torch.autograd.grad(out.square().sum(), bias)
    (expected,) = torch.autograd.grad(F.linear(x, weight, bias).square().sum(), bias)
    torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('activation', ['relu', 'gelu', 'gelu_tanh'])
@pytest.mark.parametrize('rows, trained', [(MIN_ROWS_INFERENCE, False),  # inner product
                                           (MIN_ROWS_TRAINING, True),  # convolution
                                           (MIN_ROWS_POINTWISE - 1, False)])  # F.linear
def test_the_activation_is_applied_on_every_path(activation, rows, trained, monkeypatch):
    monkeypatch.setattr(linear, 'ONEDNN_TRAINING_PRODUCTS', True)
    import torch.nn.functional as F
    torch.manual_seed(0)
    x, weight, bias = torch.randn(rows, 16), torch.randn(8, 16), torch.randn(8)
    weight.requires_grad_(trained)
    expected = {'relu': F.relu, 'gelu': F.gelu,
                'gelu_tanh': lambda t: F.gelu(t, approximate='tanh')}[activation](
                    F.linear(x, weight, bias))
    with torch.set_grad_enabled(trained):
        out = onednn_linear(x, weight, bias, activation=activation)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match='activation must be one of'):
        onednn_linear(x, weight, bias, activation='swish')


@pytest.mark.parametrize('op', ['add', 'mul'])
@pytest.mark.parametrize('trained', [False, True])
def test_the_binary_operation_is_fused_without_gradients_and_applied_on_every_path(op, trained):
    torch.manual_seed(0)
    x, weight, bias = torch.randn(64, 16), torch.randn(8, 16), torch.randn(8)
    # A strided operand, as a column slice of a wider product is.
    other = torch.randn(64, 20)[:, 4:12]
    weight.requires_grad_(trained)
    expected = {'add': torch.add, 'mul': torch.mul}[op](F.linear(x, weight, bias), other)
    with torch.set_grad_enabled(trained):
        products = _count_inner_products(
            lambda: torch.testing.assert_close(
                linear.onednn_linear_binary(x, other, weight, bias, op), expected,
                rtol=1e-5, atol=1e-5))
    assert products == (0 if trained else 1)
    with pytest.raises(ValueError, match='op must be one of'):
        linear.onednn_linear_binary(x, other, weight, bias, 'sub')
