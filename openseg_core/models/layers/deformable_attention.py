"""Multi-scale deformable attention with a fast CPU path.

mmcv compiles its deformable-attention kernel for CUDA only; elsewhere it samples each level
with ``grid_sample`` into a ``(B * heads, C / heads, Q, levels * points)`` tensor and then
weights and sums it, and that path is about half of a Mask2Former-R50's inference time at
512 x 512 on a CPU (docs/reference_model.md). Bilinear sampling followed by a weighted sum is
a weighted sum of table rows, which ``torch.nn.functional.embedding_bag`` computes without
materialising the samples.
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.ops import MultiScaleDeformableAttention
from torch import Tensor, nn

#: Zero border added around each level's map: one row / column before it, two after, so
#: that every bilinear corner of a location clamped to ``[-1, size]`` is a row of the table
#: (``size + 1`` being the next row's first column, or the extra bottom row).
_PAD_BEFORE, _PAD_AFTER = 1, 2


def _padded_table(value: Tensor, shapes: Sequence[Tuple[int, int]]) -> Tuple[Tensor, List[int]]:
    """``(B, S, heads, C')`` values -> ``(B * heads * S', C')`` rows of the zero-bordered
    maps, and each level's first row within a head."""
    batch, _, heads, channels = value.shape
    tables, starts, start = [], [], 0
    for (height, width), level in zip(shapes, value.split([h * w for h, w in shapes], 1)):
        level = level.view(batch, height, width, heads, channels).permute(0, 3, 1, 2, 4)
        pad = (0, 0, _PAD_BEFORE, _PAD_AFTER, _PAD_BEFORE, _PAD_AFTER)
        tables.append(F.pad(level, pad).flatten(2, 3))
        starts.append(start)
        start += (height + _PAD_BEFORE + _PAD_AFTER) * (width + _PAD_BEFORE + _PAD_AFTER)
    return torch.cat(tables, 2).reshape(-1, channels), starts


def multi_scale_deformable_attn_cpu(value: Tensor, spatial_shapes: Sequence[Tuple[int, int]],
                                    sampling_locations: Tensor,
                                    attention_weights: Tensor) -> Tensor:
    """The result of mmcv's ``multi_scale_deformable_attn_pytorch`` (bilinear sampling with
    zero padding, ``align_corners=False``), as one ``embedding_bag``.

    Each query and head is a bag of ``levels * points * 4`` rows of a table holding every
    level's values: a sampling location's four bilinear corners, weighted by the corner's
    bilinear weight times the location's attention weight. Differentiable in all inputs
    (through ``embedding_bag``'s own backward, which is slower than ``grid_sample``'s: train
    with :func:`multi_scale_deformable_attn_grid_sample`).

    Args:
        value: ``(B, S, heads, C')``, the levels' maps flattened and concatenated.
        spatial_shapes: ``levels`` ``(h, w)``, ``sum(h * w) == S``.
        sampling_locations: ``(B, Q, heads, levels, points, 2)`` ``(x, y)`` in ``[0, 1]``
            (outside is zero padding).
        attention_weights: ``(B, Q, heads, levels, points)``.

    Returns:
        ``(B, Q, heads * C')``.
    """
    batch, _, heads, channels = value.shape
    _, num_queries, _, levels, points, _ = sampling_locations.shape
    shapes = [(int(h), int(w)) for h, w in spatial_shapes]
    table, starts = _padded_table(value, shapes)
    rows_per_head = table.shape[0] // (batch * heads)
    sizes = sampling_locations.new_tensor([(w, h) for h, w in shapes])  # (levels, 2) x, y
    # Pixel coordinates (align_corners=False), clamped to the border: a location further out
    # has both corners in the zero border, as its zero-padded samples are.
    pixels = torch.addcmul(sizes.new_tensor(-0.5), sampling_locations, sizes[:, None])
    pixels = torch.maximum(torch.minimum(pixels, sizes[:, None]), sizes.new_tensor(-1.0))
    corner = pixels.floor()
    frac = pixels - corner
    corner = corner.long()
    row_len = torch.tensor([w + _PAD_BEFORE + _PAD_AFTER for _, w in shapes],
                           device=corner.device).view(levels, 1)
    offset = (torch.arange(batch * heads, device=corner.device).view(batch, 1, heads, 1, 1)
              * rows_per_head + torch.tensor(starts, device=corner.device).view(levels, 1)
              + _PAD_BEFORE * (row_len + 1))
    top_left = torch.addcmul(offset, corner[..., 1], row_len) + corner[..., 0]
    corners = torch.stack([torch.zeros_like(row_len), torch.ones_like(row_len), row_len,
                           row_len + 1], -1)  # (levels, 1, 4)
    index = top_left[..., None] + corners
    frac_x, frac_y = frac[..., 0], frac[..., 1]
    lower = attention_weights * frac_y
    upper = attention_weights - lower
    left = 1 - frac_x
    weights = torch.stack([upper * left, upper * frac_x, lower * left, lower * frac_x], -1)
    bags = batch * num_queries * heads
    out = F.embedding_bag(index.view(bags, -1), table, per_sample_weights=weights.view(bags, -1),
                          mode='sum')
    return out.view(batch, num_queries, heads * channels)


def multi_scale_deformable_attn_grid_sample(value: Tensor,
                                            spatial_shapes: Sequence[Tuple[int, int]],
                                            sampling_locations: Tensor,
                                            attention_weights: Tensor) -> Tensor:
    """mmcv's ``multi_scale_deformable_attn_pytorch`` (the same arguments, shapes and
    results), for training: each level's ``grid_sample`` output is weighted and summed as it
    comes, instead of stacking the levels into one ``(B * heads, C', Q, levels * points)``
    tensor first. The stack costs a copy forward and another backward (its gradient slices
    are not contiguous for ``grid_sample``'s backward): about 6 % of a Mask2Former-R50
    training step at 512 x 512 on a CPU (docs/reference_model.md)."""
    batch, _, heads, channels = value.shape
    _, num_queries, _, levels, points, _ = sampling_locations.shape
    shapes = [(int(h), int(w)) for h, w in spatial_shapes]
    grids = 2 * sampling_locations - 1
    # (B * heads, 1, Q, levels, points)
    weights = attention_weights.transpose(1, 2).reshape(batch * heads, 1, num_queries,
                                                        levels, points)
    output = None
    for level, ((height, width), level_value) in enumerate(
            zip(shapes, value.split([h * w for h, w in shapes], dim=1))):
        level_value = level_value.flatten(2).transpose(1, 2).reshape(
            batch * heads, channels, height, width)
        grid = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)  # (B * heads, Q, P, 2)
        sampled = F.grid_sample(level_value, grid, mode='bilinear', padding_mode='zeros',
                                align_corners=False)  # (B * heads, C', Q, P)
        weighted = (sampled * weights[:, :, :, level]).sum(-1)
        output = weighted if output is None else output + weighted
    return output.view(batch, heads * channels, num_queries).transpose(1, 2).contiguous()


class FastMultiScaleDeformableAttention(MultiScaleDeformableAttention):
    """mmcv's ``MultiScaleDeformableAttention`` (same parameters, same results) that samples
    with :func:`multi_scale_deformable_attn_cpu` on a CPU at inference. On CUDA it is mmcv's
    own module; with gradients it samples with ``grid_sample`` as mmcv does on a CPU (whose
    backward is the faster one), level by level
    (:func:`multi_scale_deformable_attn_grid_sample`).

    mmdet's deformable encoder layers build mmcv's class directly, not through a registry, so
    a built module is converted in place (:func:`convert_deformable_attention`) rather than
    configured.
    """

    def forward(self, query: Tensor, key=None, value=None, identity=None, query_pos=None,
                key_padding_mask=None, reference_points=None, spatial_shapes=None,
                level_start_index=None, **kwargs) -> Tensor:
        """As mmcv's (``(B, Q, C)`` when ``batch_first``, else ``(Q, B, C)``)."""
        value = query if value is None else value
        identity = query if identity is None else identity
        if value.is_cuda or reference_points.shape[-1] != 2:
            return super().forward(query, key, value, identity, query_pos, key_padding_mask,
                                   reference_points, spatial_shapes, level_start_index,
                                   **kwargs)
        if query_pos is not None:
            query = query + query_pos
        if not self.batch_first:
            query, value = query.transpose(0, 1), value.transpose(0, 1)
        batch, num_queries, _ = query.shape
        value = self.value_proj(value)
        if key_padding_mask is not None:
            value = value.masked_fill(key_padding_mask[..., None], 0.0)
        value = value.view(batch, value.shape[1], self.num_heads, -1)
        offsets = self.sampling_offsets(query).view(batch, num_queries, self.num_heads,
                                                    self.num_levels, self.num_points, 2)
        weights = self.attention_weights(query).view(
            batch, num_queries, self.num_heads, self.num_levels * self.num_points).softmax(-1)
        weights = weights.view(batch, num_queries, self.num_heads, self.num_levels,
                               self.num_points)
        # Offsets are in pixels of each level: normalise by its (w, h).
        normaliser = spatial_shapes.flip(-1).to(offsets.dtype)
        locations = reference_points[:, :, None, :, None, :] \
            + offsets / normaliser[None, None, None, :, None, :]
        if torch.is_grad_enabled() and any(t.requires_grad for t in (value, locations, weights)):
            output = multi_scale_deformable_attn_grid_sample(value, spatial_shapes.tolist(),
                                                             locations, weights)
        else:
            output = multi_scale_deformable_attn_cpu(value, spatial_shapes.tolist(), locations,
                                                     weights)
        output = self.output_proj(output)
        if not self.batch_first:
            output = output.transpose(0, 1)
        return self.dropout(output) + identity


def convert_deformable_attention(module: nn.Module) -> nn.Module:
    """Turn every mmcv ``MultiScaleDeformableAttention`` inside ``module`` into a
    :class:`FastMultiScaleDeformableAttention` in place (parameters, buffers and state-dict
    keys unchanged) and return ``module``.

    The class is swapped on the instance, as ``torch.nn.utils.parametrize`` does: the
    subclass adds no state, only a forward.
    """
    for child in module.modules():
        if type(child) is MultiScaleDeformableAttention:
            child.__class__ = FastMultiScaleDeformableAttention
    return module
