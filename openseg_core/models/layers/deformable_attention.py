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

from .inference_cache import inference_cache
from .linear import needs_gradient, onednn_linear

#: Zero border added around each level's map: one row / column before it, two after, so
#: that every bilinear corner of a location clamped to ``[-1, size]`` is a pixel of the table
#: (``size + 1`` being the next row's first column, or the extra bottom row).
_PAD_BEFORE, _PAD_AFTER = 1, 2


def _padded_table(value: Tensor, shapes: Sequence[Tuple[int, int]]) -> Tuple[Tensor, List[int]]:
    """``(B, S, heads, C')`` values -> ``(B * S' * heads, C')`` table rows: each level's map
    with its zero border, pixel after pixel, the heads of a pixel in a row; and each level's
    first pixel within an image.

    One copy of the values: a pixel's heads stay together as the value projection wrote them.
    """
    batch, _, heads, channels = value.shape
    padded = [(h + _PAD_BEFORE + _PAD_AFTER, w + _PAD_BEFORE + _PAD_AFTER) for h, w in shapes]
    starts = [0]
    for h, w in padded[:-1]:
        starts.append(starts[-1] + h * w)
    table = value.new_zeros(batch, starts[-1] + padded[-1][0] * padded[-1][1], heads, channels)
    levels = value.split([h * w for h, w in shapes], 1)
    for (height, width), (rows, cols), start, level in zip(shapes, padded, starts, levels):
        table[:, start:start + rows * cols].view(batch, rows, cols, heads, channels)[
            :, _PAD_BEFORE:_PAD_BEFORE + height, _PAD_BEFORE:_PAD_BEFORE + width] = level.view(
                batch, height, width, heads, channels)
    return table.view(-1, channels), starts


def _softmax_small_last_dim(x: Tensor) -> Tensor:
    """``x.softmax(-1)`` for a short last dimension (a deformable head's ``levels * points``
    weights): torch's CPU kernel vectorises along that dimension, 6x slower there than these
    four whole-tensor steps (12 weights of 43008 heads, 2 cores). Equal to float rounding."""
    x = (x - x.amax(-1, keepdim=True)).exp_()
    return x.div_(x.sum(-1, keepdim=True))


def sample_at_pixels(value: Tensor, shapes: Sequence[Tuple[int, int]], pixels_x: Tensor,
                     pixels_y: Tensor, attention_weights: Tensor) -> Tensor:
    """Bilinear samples at pixel coordinates, weighted and summed per query and head: mmcv's
    deformable-attention sampling (zero padding), as one ``embedding_bag``.

    Each query and head is a bag of ``4 * levels * points`` rows of a table holding every
    level's values: a sampling location's four bilinear corners, weighted by the corner's
    bilinear weight times the location's attention weight.

    Args:
        value: ``(B, S, heads, C')``, the levels' maps flattened and concatenated.
        shapes: ``levels`` ``(h, w)``, ``sum(h * w) == S``.
        pixels_x, pixels_y: ``(B, Q, heads, levels, points)`` sampling locations in pixels of
            each level, ``align_corners=False`` (the first pixel's centre is 0; outside is
            zero padding).
        attention_weights: ``(B, Q, heads, levels, points)``.

    Returns:
        ``(B, Q, heads * C')``.

    Every per-level constant below is expanded to the full ``(heads, levels, points)`` shape,
    and a bag lists its corners first: torch's CPU kernels run at vector speed on operands
    that vary along all trailing dimensions, and tens of times slower when one of them is
    constant along the innermost (a level's size across the points and ``(x, y)``, a corner's
    index offset across the four corners).
    """
    batch, _, heads, channels = value.shape
    _, num_queries, _, levels, points = pixels_x.shape
    table, starts = _padded_table(value, shapes)
    image_pixels = table.shape[0] // (batch * heads)
    index_dtype = torch.int32 if table.shape[0] < 2**31 else torch.long
    device = pixels_x.device

    def per_level(values, dtype):  # one value per level -> (heads, levels, points)
        values = torch.tensor(values, dtype=dtype, device=device)
        return values[None, :, None].expand(heads, levels, points).contiguous()

    row_len = [w + _PAD_BEFORE + _PAD_AFTER for _, w in shapes]
    corners, fractions = [], []
    for pixels, sizes in ((pixels_x, [w for _, w in shapes]), (pixels_y, [h for h, _ in shapes])):
        # A location further out than one pixel has all its corners in the zero border, as
        # its zero-padded samples are.
        pixels = torch.minimum(pixels.clamp(min=-1.0), per_level(sizes, pixels.dtype))
        corner = pixels.floor()
        fractions.append(pixels.sub_(corner))
        corners.append(corner.to(index_dtype))
    # Table row of the top-left corner: (image pixel) * heads + head.
    level_first = per_level([start + _PAD_BEFORE * (length + 1) for start, length in
                             zip(starts, row_len)], index_dtype)
    image_first = torch.arange(batch, dtype=index_dtype, device=device) * image_pixels
    head = torch.arange(heads, dtype=index_dtype, device=device).view(heads, 1, 1)
    first = (level_first + image_first.view(batch, 1, 1, 1)) * heads + head
    top_left = corners[1] * per_level([n * heads for n in row_len], index_dtype)
    top_left += first.view(batch, 1, heads, levels, points)
    top_left += corners[0] * heads
    index = top_left.new_empty(batch, num_queries, heads, 4, levels, points)
    for k, step in enumerate(([0] * levels, [heads] * levels, [n * heads for n in row_len],
                              [(n + 1) * heads for n in row_len])):
        torch.add(top_left, per_level(step, index_dtype), out=index[:, :, :, k])
    frac_x, frac_y = fractions
    lower = attention_weights * frac_y
    upper = attention_weights - lower
    left = 1 - frac_x
    weights = torch.stack([upper * left, upper * frac_x, lower * left, lower * frac_x], 3)
    bags = batch * num_queries * heads
    out = F.embedding_bag(index.view(bags, -1), table, per_sample_weights=weights.view(bags, -1),
                          mode='sum')
    return out.view(batch, num_queries, heads * channels)


def multi_scale_deformable_attn_cpu(value: Tensor, spatial_shapes: Sequence[Tuple[int, int]],
                                    sampling_locations: Tensor,
                                    attention_weights: Tensor) -> Tensor:
    """The result of mmcv's ``multi_scale_deformable_attn_pytorch`` (bilinear sampling with
    zero padding, ``align_corners=False``) through :func:`sample_at_pixels`. Differentiable in
    all inputs (through ``embedding_bag``'s own backward, which is slower than
    ``grid_sample``'s: train with :func:`multi_scale_deformable_attn_grid_sample`).

    Args:
        value: ``(B, S, heads, C')``, the levels' maps flattened and concatenated.
        spatial_shapes: ``levels`` ``(h, w)``, ``sum(h * w) == S``.
        sampling_locations: ``(B, Q, heads, levels, points, 2)`` ``(x, y)`` in ``[0, 1]``
            (outside is zero padding).
        attention_weights: ``(B, Q, heads, levels, points)``.

    Returns:
        ``(B, Q, heads * C')``.
    """
    shapes = [(int(h), int(w)) for h, w in spatial_shapes]
    sizes = sampling_locations.new_tensor([(w, h) for h, w in shapes])  # (levels, 2) x, y
    pixels = torch.addcmul(sizes.new_tensor(-0.5), sampling_locations, sizes[:, None])
    return sample_at_pixels(value, shapes, pixels[..., 0], pixels[..., 1], attention_weights)


def multi_scale_deformable_attn_grid_sample(value: Tensor,
                                            spatial_shapes: Sequence[Tuple[int, int]],
                                            sampling_locations: Tensor,
                                            attention_weights: Tensor) -> Tensor:
    """mmcv's ``multi_scale_deformable_attn_pytorch`` (the same arguments, shapes and
    results), for training. Two differences in how it gets there:

    - each level's ``grid_sample`` output is weighted and summed as it comes, instead of
      stacking the levels into one ``(B * heads, C', Q, levels * points)`` tensor first. The
      stack costs a copy forward and another backward (its gradient slices are not contiguous
      for ``grid_sample``'s backward): about 6 % of a Mask2Former-R50 training step at
      512 x 512 on a CPU (docs/reference_model.md).
    - the samples are laid out ``(B * heads, C', points, Q)``, the queries innermost, where
      mmcv's are ``(..., Q, points)``. The weighting, the sum over the points and their
      backward then run along the queries; along 4 points torch's CPU kernels run at a
      fraction of their vector speed (forward + backward of an R50 encoder layer's sampling,
      batch 2, 2 cores: 531 -> 462 ms).
    """
    batch, _, heads, channels = value.shape
    _, num_queries, _, levels, points, _ = sampling_locations.shape
    shapes = [(int(h), int(w)) for h, w in spatial_shapes]
    # (B * heads, levels, points, Q, 2) and (B * heads, 1, levels, points, Q)
    grids = (2 * sampling_locations - 1).permute(0, 2, 3, 4, 1, 5).reshape(
        batch * heads, levels, points, num_queries, 2)
    weights = attention_weights.permute(0, 2, 3, 4, 1).reshape(
        batch * heads, 1, levels, points, num_queries)
    output = None
    for level, ((height, width), level_value) in enumerate(
            zip(shapes, value.split([h * w for h, w in shapes], dim=1))):
        level_value = level_value.flatten(2).transpose(1, 2).reshape(
            batch * heads, channels, height, width)
        sampled = F.grid_sample(level_value, grids[:, level], mode='bilinear',
                                padding_mode='zeros', align_corners=False)  # (B*heads, C', P, Q)
        weighted = (sampled * weights[:, :, level]).sum(2)
        output = weighted if output is None else output + weighted
    return output.view(batch, heads * channels, num_queries).transpose(1, 2).contiguous()


class FastMultiScaleDeformableAttention(MultiScaleDeformableAttention):
    """mmcv's ``MultiScaleDeformableAttention`` (same parameters, same results) that samples
    with :func:`multi_scale_deformable_attn_cpu` on a CPU at inference. On CUDA it is mmcv's
    own module; with gradients it samples with ``grid_sample`` as mmcv does on a CPU (whose
    backward is the faster one), level by level
    (:func:`multi_scale_deformable_attn_grid_sample`). Reference points are points
    ``(B, Q, levels, 2)`` or boxes ``(B, Q, levels, 4)`` (``cx, cy, w, h``: the offsets are
    scaled by half the box over the number of points, as mmcv's), all in ``[0, 1]``.

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
        if value.is_cuda or reference_points.shape[-1] not in (2, 4):
            return super().forward(query, key, value, identity, query_pos, key_padding_mask,
                                   reference_points, spatial_shapes, level_start_index,
                                   **kwargs)
        if query_pos is not None:
            query = query + query_pos
        if not self.batch_first:
            query, value = query.transpose(0, 1), value.transpose(0, 1)
        batch, num_queries, _ = query.shape
        value = self.value_proj(value)
        if key_padding_mask is not None and key_padding_mask.any():
            value = value.masked_fill(key_padding_mask[..., None], 0.0)
        value = value.view(batch, value.shape[1], self.num_heads, -1)
        heads, levels, points = self.num_heads, self.num_levels, self.num_points
        if not needs_gradient(query, value, reference_points, *self.parameters()):
            shapes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
            weights = _softmax_small_last_dim(self.attention_weights(query).view(
                batch, num_queries, heads, levels * points)).view(
                    batch, num_queries, heads, levels, points)
            if reference_points.shape[-1] == 2:
                pixels = self._sampling_pixels(query, reference_points, shapes)
                output = sample_at_pixels(value, shapes, pixels[:, :, :, 0],
                                          pixels[:, :, :, 1], weights)
            else:
                output = multi_scale_deformable_attn_cpu(
                    value, shapes, self._sampling_locations(query, reference_points,
                                                            spatial_shapes), weights)
        else:
            weights = self.attention_weights(query).view(
                batch, num_queries, heads, levels * points).softmax(-1)
            output = multi_scale_deformable_attn_grid_sample(
                value, spatial_shapes.tolist(),
                self._sampling_locations(query, reference_points, spatial_shapes),
                weights.view(batch, num_queries, heads, levels, points))
        output = self.output_proj(output)
        if not self.batch_first:
            output = output.transpose(0, 1)
        return self.dropout(output) + identity

    def _sampling_locations(self, query: Tensor, reference_points: Tensor,
                            spatial_shapes: Tensor) -> Tensor:
        """``(B, Q, heads, levels, points, 2)`` sampling locations ``(x, y)`` in ``[0, 1]``,
        mmcv's: a point plus the offsets in pixels of each level, or a box centre plus the
        offsets times half the box over the number of points."""
        batch, num_queries, _ = query.shape
        offsets = self.sampling_offsets(query).view(batch, num_queries, self.num_heads,
                                                    self.num_levels, self.num_points, 2)
        reference = reference_points[:, :, None, :, None, :2]
        if reference_points.shape[-1] == 2:
            size = spatial_shapes.flip(-1).to(offsets.dtype)[None, None, None, :, None, :]
            return reference + offsets / size
        box = reference_points[:, :, None, :, None, 2:]
        return reference + offsets / self.num_points * box * 0.5

    def _sampling_pixels(self, query: Tensor, reference_points: Tensor,
                         shapes: Sequence[Tuple[int, int]]) -> Tensor:
        """``(B, Q, heads, 2, levels, points)`` sampling locations ``(x, y)`` in pixels of
        each level (``align_corners=False``), from ``(B, Q, C)`` queries and
        ``(B, Q, levels, 2)`` reference points in ``[0, 1]``.

        mmcv samples at ``(reference + offset / size) * size - 0.5`` pixels, which is
        ``reference * size + offset - 0.5``: one product adds the reference term to the
        offsets (the same locations to float rounding, without a division and a broadcast
        along the heads and points that took 5 ms a layer at 5376 queries on 2 cores). The
        offset layer's outputs are reordered so that a head's x and y are contiguous planes."""
        batch, num_queries, channels = query.shape
        heads, levels, points = self.num_heads, self.num_levels, self.num_points
        linear = self.sampling_offsets

        def reordered():  # kept between calls: the weight's copy is a product's size
            weight = linear.weight.view(heads, levels, points, 2, channels)
            bias = (linear.bias if linear.bias is not None
                    else query.new_zeros(linear.out_features))
            bias = bias.view(heads, levels, points, 2).permute(0, 3, 1, 2)
            return (weight.permute(0, 3, 1, 2, 4).reshape(-1, channels),
                    bias.reshape(-1) - 0.5)

        sources = [t for t in (linear.weight, linear.bias) if t is not None]
        weight, bias = inference_cache(self).get('sampling_offsets', sources, reordered)
        offsets = onednn_linear(query, weight, bias)
        # Reference coordinate (level, x or y) times the level's width or height goes to
        # every offset of that level along that axis.
        spread = query.new_zeros(levels, 2, heads, 2, levels, points)
        for level, (height, width) in enumerate(shapes):
            spread[level, 0, :, 0, level] = width
            spread[level, 1, :, 1, level] = height
        pixels = torch.addmm(offsets.view(batch * num_queries, -1),
                             reference_points.reshape(batch * num_queries, levels * 2),
                             spread.view(levels * 2, -1))
        return pixels.view(batch, num_queries, heads, 2, levels, points)


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
