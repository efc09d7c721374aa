# X-Decoder sized to train on `shapes` on a 2-core CPU in minutes: the core reference model's
# backbone, pixel decoder and decoder sizes (ResNet-18 at 1/4 width, 2 deformable encoder
# layers, 4 decoder layers, width 64), 20 object queries + the global query, and a 2-layer
# width-64 CLIP-style causal text encoder (random weights: tests and `shapes` need no download).
embed = 64
model = dict(
    type='xdecoder.XDecoder',
    data_preprocessor=dict(type='MultiTaskDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=32,
                           pad_mask=True, mask_pad_value=0, pad_seg=True, seg_pad_value=255),
    backbone=dict(type='ResNet', depth=18, base_channels=16, num_stages=4,
                  out_indices=(0, 1, 2, 3), frozen_stages=-1, norm_cfg=dict(type='BN'),
                  norm_eval=False, style='pytorch'),
    pixel_decoder=dict(
        type='MSDeformAttnPixelDecoder', in_channels=[16, 32, 64, 128], strides=[4, 8, 16, 32],
        feat_channels=embed, out_channels=embed, num_outs=3,
        norm_cfg=dict(type='GN', num_groups=16), act_cfg=dict(type='ReLU'),
        encoder=dict(num_layers=2, layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed, num_heads=4, num_levels=3, num_points=4,
                               dropout=0.0, batch_first=True),
            ffn_cfg=dict(embed_dims=embed, feedforward_channels=4 * embed, num_fcs=2,
                         ffn_drop=0.0, act_cfg=dict(type='ReLU', inplace=True)))),
        positional_encoding=dict(num_feats=embed // 2, normalize=True)),
    query_decoder=dict(
        type='xdecoder.XDecoderQueryDecoder', num_queries=21, text_dims=embed,
        context_length=77, embed_dims=embed, memory_channels=embed, num_feature_levels=3,
        transformer_decoder=dict(
            num_layers=4, return_intermediate=True,
            layer_cfg=dict(
                self_attn_cfg=dict(embed_dims=embed, num_heads=4, dropout=0.0,
                                   batch_first=True),
                cross_attn_cfg=dict(embed_dims=embed, num_heads=4, dropout=0.0,
                                    batch_first=True),
                ffn_cfg=dict(embed_dims=embed, feedforward_channels=4 * embed, num_fcs=2,
                             ffn_drop=0.0, act_cfg=dict(type='ReLU', inplace=True))),
            init_cfg=None)),
    text_encoder=dict(type='OpenCLIPTextEncoder', model_name='ViT-B-16', embed_dim=embed,
                      text_cfg=dict(width=embed, heads=2, layers=2), pretrained=None,
                      templates=('an image of a {}.',), frozen=True),
    # As in the core's tiny config: a random text tower embeds all prompts within a small
    # cone, so the logit scale starts at CLIP's largest, 1/0.01.
    head=dict(type='xdecoder.XDecoderHead', embed_dims=embed, proj_dims=embed,
              token_dims=embed, init_temperature=0.01),
    mask_loss=dict(type='MaskClassificationLoss', class_weight=2.0, mask_weight=5.0,
                   dice_weight=5.0, no_object_weight=0.1, num_points=1024,
                   oversample_ratio=3.0, importance_sample_ratio=0.75,
                   matcher=dict(type='HungarianMaskMatcher', num_points=1024, class_weight=2.0,
                                mask_weight=5.0, dice_weight=5.0)),
    postprocessor=dict(type='MaskPostProcessor', panoptic_on=True, semantic_on=True,
                       instance_on=True, object_mask_thr=0.5, iou_thr=0.8, max_per_image=50),
    caption_weight=1.0, retrieval_weight=1.0,
    test_cfg=dict(beam_size=5, max_caption_len=40, length_penalty=1.0, mask_threshold=0.5))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    clip_grad=dict(max_norm=1.0, norm_type=2))
# A single-task config leaves the other tasks' parameters without gradients.
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)
