"""mmdet's Mask2Former pixel decoder with its maps kept in one memory layout."""
from typing import List, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.layers import MSDeformAttnPixelDecoder
from torch import Tensor, nn


class FastMSDeformAttnPixelDecoder(MSDeformAttnPixelDecoder):
    """mmdet's ``MSDeformAttnPixelDecoder`` (same parameters, same results) whose forward keeps
    the encoder's maps in the layout the convolutions use.

    mmdet turns the encoder's ``(B, S, C)`` output into ``(B, C, h, w)`` maps by a permute, a
    split and a reshape. With one image the reshaped view's batch stride is one that torch's
    channels-last test rejects, so ``F.interpolate`` of the coarsest FPN input returns an NCHW
    copy, made in two passes, which is then added to the NHWC lateral map. That was 45 ms of
    the reference model's 512 x 512 inference on 2 cores (docs/reference_model.md). Here each
    level of the output is viewed as ``(B, h, w, C)`` and permuted, which gives the canonical
    channels-last strides. No padding masks are built: mmdet's are all False.

    mmdet builds this decoder by class inside Mask2Former-style configs, so a built one is
    converted in place (:func:`convert_pixel_decoder`), as the deformable attention is.
    """

    def forward(self, feats: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """As mmdet's: ``feats`` ``(B, C_i, H_i, W_i)`` from high to low resolution ->
        ``mask_feature (B, C, H_0, W_0)`` and ``num_outs`` maps from low resolution up."""
        batch = feats[0].shape[0]
        inputs, positions, shapes, references = [], [], [], []
        for i in range(self.num_encoder_levels):
            level = self.num_input_levels - i - 1
            feat = feats[level]
            height, width = feat.shape[-2:]
            no_padding = feat.new_zeros((batch, height, width), dtype=torch.bool)
            position = (self.level_encoding.weight[i].view(1, -1, 1, 1)
                        + self.postional_encoding(no_padding))
            points = self.point_generator.single_level_grid_priors((height, width), level,
                                                                   device=feat.device)
            references.append(points / (points.new_tensor([width, height])
                                        * self.strides[level]))
            inputs.append(self.input_convs[i](feat).flatten(2).transpose(1, 2))
            positions.append(position.flatten(2).transpose(1, 2))
            shapes.append((height, width))
        spatial_shapes = torch.tensor(shapes, device=feats[0].device)
        level_start_index = torch.cat([spatial_shapes.new_zeros(1),
                                       spatial_shapes.prod(1).cumsum(0)[:-1]])
        reference_points = torch.cat(references)[None, :, None].repeat(
            batch, 1, self.num_encoder_levels, 1)
        memory = self.encoder(
            query=torch.cat(inputs, 1), query_pos=torch.cat(positions, 1),
            key_padding_mask=None, spatial_shapes=spatial_shapes,
            reference_points=reference_points, level_start_index=level_start_index,
            valid_ratios=reference_points.new_ones((batch, self.num_encoder_levels, 2)))
        outs = [level.view(batch, h, w, -1).permute(0, 3, 1, 2) for level, (h, w) in
                zip(memory.split([h * w for h, w in shapes], 1), shapes)]
        for i in range(self.num_input_levels - self.num_encoder_levels - 1, -1, -1):
            lateral = self.lateral_convs[i](feats[i])
            y = lateral + F.interpolate(outs[-1], size=lateral.shape[-2:], mode='bilinear',
                                        align_corners=False)
            outs.append(self.output_convs[i](y))
        return self.mask_feature(outs[-1]), outs[:self.num_outs]


def convert_pixel_decoder(module: nn.Module) -> nn.Module:
    """Turn every mmdet ``MSDeformAttnPixelDecoder`` inside ``module`` into a
    :class:`FastMSDeformAttnPixelDecoder` in place (parameters and state-dict keys unchanged)
    and return ``module``."""
    for child in module.modules():
        if type(child) is MSDeformAttnPixelDecoder:
            child.__class__ = FastMSDeformAttnPixelDecoder
    return module
