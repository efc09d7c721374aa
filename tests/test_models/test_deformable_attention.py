"""The CPU deformable-attention path equals mmcv's, values and gradients."""
import pytest
import torch
from mmcv.ops import MultiScaleDeformableAttention
from mmcv.ops.multi_scale_deform_attn import multi_scale_deformable_attn_pytorch

from openseg_core.models.layers import (FastMultiScaleDeformableAttention,
                                        convert_deformable_attention,
                                        multi_scale_deformable_attn_cpu,
                                        multi_scale_deformable_attn_grid_sample)

pytestmark = pytest.mark.usefixtures('single_thread')
SHAPES = [(8, 6), (4, 3), (2, 2)]


def _inputs(batch=2, heads=2, channels=4, points=3, spread=0.3):
    torch.manual_seed(0)
    num_values = sum(h * w for h, w in SHAPES)
    value = torch.randn(batch, num_values, heads, channels, dtype=torch.float64)
    # Locations up to `spread` outside the map on each side: zero padding is part of the rule.
    locations = torch.rand(batch, 7, heads, len(SHAPES), points, 2, dtype=torch.float64)
    locations = locations * (1 + 2 * spread) - spread
    weights = torch.rand(batch, 7, heads, len(SHAPES), points, dtype=torch.float64)
    return value, locations, weights


#: The inference path (embedding_bag) and the training path (grid_sample level by level).
PATHS = [multi_scale_deformable_attn_cpu, multi_scale_deformable_attn_grid_sample]


@pytest.mark.parametrize('path', PATHS)
def test_equals_mmcv_sampling_inside_and_outside_the_maps(path):
    value, locations, weights = _inputs()
    expected = multi_scale_deformable_attn_pytorch(value, torch.tensor(SHAPES), locations,
                                                   weights)
    got = path(value, SHAPES, locations, weights)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_location_on_a_pixel_centre_reads_that_pixel():
    value = torch.arange(48, dtype=torch.float64).view(1, 48, 1, 1)
    # Pixel (x=2, y=5) of the 8 x 6 level: centre at ((2 + 0.5) / 6, (5 + 0.5) / 8).
    location = torch.tensor([2.5 / 6, 5.5 / 8], dtype=torch.float64).view(1, 1, 1, 1, 1, 2)
    out = multi_scale_deformable_attn_cpu(value, [(8, 6)], location,
                                          torch.ones(1, 1, 1, 1, 1, dtype=torch.float64))
    assert out.item() == 5 * 6 + 2


@pytest.mark.parametrize('path', PATHS)
def test_gradients_equal_mmcv(path):
    value, locations, weights = _inputs()
    inputs = [t.requires_grad_() for t in (value, locations, weights)]
    grad = torch.randn(2, 7, 8, dtype=torch.float64)
    expected = torch.autograd.grad(multi_scale_deformable_attn_pytorch(
        value, torch.tensor(SHAPES), locations, weights), inputs, grad)
    got = torch.autograd.grad(path(value, SHAPES, locations, weights), inputs, grad)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8)


def test_converted_module_keeps_its_state_and_outputs():
    torch.manual_seed(0)
    attn = MultiScaleDeformableAttention(embed_dims=16, num_heads=2, num_levels=3, num_points=3,
                                         dropout=0.0, batch_first=True)
    attn.init_weights()
    # Spread the offsets so that samples fall between pixels and off the maps.
    torch.nn.init.normal_(attn.sampling_offsets.weight, std=0.5)
    num_values = sum(h * w for h, w in SHAPES)
    query = torch.randn(2, num_values, 16)
    ref_points = torch.rand(2, num_values, 3, 2)
    shapes = torch.tensor(SHAPES)
    start = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    args = dict(query=query, reference_points=ref_points, spatial_shapes=shapes,
                level_start_index=start)
    with torch.no_grad():
        expected = attn(**args)
    keys = list(attn.state_dict())
    wrapper = torch.nn.Sequential(attn)
    assert convert_deformable_attention(wrapper) is wrapper
    assert type(attn) is FastMultiScaleDeformableAttention and list(attn.state_dict()) == keys
    with torch.no_grad():
        torch.testing.assert_close(attn(**args), expected, rtol=1e-5, atol=1e-5)
    # With gradients it samples with grid_sample and still trains.
    attn(**args).sum().backward()
    assert attn.sampling_offsets.weight.grad.abs().sum() > 0
    # The reordered offset layer is kept between calls: it follows the weights' changes.
    with torch.no_grad():
        attn.sampling_offsets.weight.mul_(-1.5)
        attn.sampling_offsets.bias.add_(0.3)
        attn.__class__ = MultiScaleDeformableAttention
        expected = attn(**args)
        attn.__class__ = FastMultiScaleDeformableAttention
        torch.testing.assert_close(attn(**args), expected, rtol=1e-5, atol=1e-5)


def test_box_reference_points_give_mmcvs_outputs_and_gradients(monkeypatch):
    """Decoders refining boxes (Deformable DETR's two-stage, DINO, APE) pass ``(cx, cy, w, h)``
    reference points: the offsets scale with the box instead of the level's size."""
    torch.manual_seed(0)
    attn = MultiScaleDeformableAttention(embed_dims=16, num_heads=2, num_levels=3, num_points=3,
                                         dropout=0.0, batch_first=True)
    attn.init_weights()
    torch.nn.init.normal_(attn.sampling_offsets.weight, std=0.5)
    attn.double()
    num_values = sum(h * w for h, w in SHAPES)
    value = torch.randn(2, num_values, 16, dtype=torch.float64)
    query = torch.randn(2, 5, 16, dtype=torch.float64)
    # Boxes partly off the maps: their samples reach the zero padding.
    boxes = torch.rand(2, 5, 3, 4, dtype=torch.float64) * 1.2 - 0.1
    shapes = torch.tensor(SHAPES)
    start = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    args = dict(query=query, value=value, reference_points=boxes, spatial_shapes=shapes,
                level_start_index=start)

    def outputs_and_gradients():
        attn.zero_grad()
        with torch.no_grad():
            inference = attn(**args)
        attn(**args).pow(2).sum().backward()
        return inference, [p.grad.clone() for p in attn.parameters()]

    expected, expected_grads = outputs_and_gradients()
    convert_deformable_attention(attn)
    # The converted module samples on its own paths, not through mmcv's.
    import mmcv.ops.multi_scale_deform_attn as mmcv_msda
    monkeypatch.setattr(mmcv_msda, 'multi_scale_deformable_attn_pytorch', None)
    assert type(attn) is FastMultiScaleDeformableAttention
    output, grads = outputs_and_gradients()
    torch.testing.assert_close(output, expected, rtol=1e-10, atol=1e-10)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-8, atol=1e-10)
