# X-Decoder sized to train on `shapes` on a 2-core CPU in minutes: the core reference model's
# backbone, pixel decoder and decoder sizes (ResNet-18 at 1/4 width, 2 deformable encoder
# layers, 4 decoder layers, width 64), 20 object queries + the global query, and the 2-layer
# width-64 text tower of the small CLIP pretrained on `shapes` (docs/pretrained_clip.md).
_base_ = ['openseg_core::_base_/models/tiny_shapes_parts.py']

embed = 64
model = dict(
    type='xdecoder.XDecoder',
    data_preprocessor={{_base_.tiny_data_preprocessor}},
    backbone={{_base_.tiny_backbone}},
    pixel_decoder={{_base_.tiny_pixel_decoder}},
    query_decoder=dict(
        type='xdecoder.XDecoderQueryDecoder', num_queries=21, text_dims=embed,
        context_length=77, embed_dims=embed, memory_channels=embed, num_feature_levels=3,
        transformer_decoder={{_base_.tiny_transformer_decoder}}),
    # The text tower of the small CLIP pretrained on `shapes` (as X-Decoder starts from
    # UniCL's); width 64, 2 layers.
    text_encoder=dict(**_base_.shapes_clip_text_encoder, templates=('an image of a {}.',)),
    head=dict(type='xdecoder.XDecoderHead', embed_dims=embed, proj_dims=embed,
              token_dims=embed, init_temperature=0.07),
    criterion={{_base_.tiny_criterion}},
    # The official model passes the text queries through lang_proj too; trained from scratch
    # here, sharing that projection between the queries and the pooled (retrieval) embedding
    # trains worse. Measured (docs/plugins/xdecoder.md): referring cIoU 65.0 with it, 68.4
    # without; captioning CIDEr 254.6 / t2i R@1 62.5 with it, 267.4 / 73.5 without.
    project_text_queries=False,
    postprocessor=dict(type='MaskPostProcessor', panoptic_on=True, semantic_on=True,
                       instance_on=True, object_mask_thr=0.5, iou_thr=0.8, max_per_image=50),
    tasks=dict(
        generic=dict(type='xdecoder.GenericTask'),
        referring=dict(type='xdecoder.ReferringTask', loss_cls=dict(
            type='mmdet.CrossEntropyLoss', use_sigmoid=False, loss_weight=2.0)),
        captioning=dict(type='xdecoder.CaptioningTask',
                        loss_caption=dict(type='TokenCrossEntropyLoss', loss_weight=1.0),
                        loss_retrieval=dict(type='ImageTextContrastiveLoss', loss_weight=1.0))),
    test_cfg=dict(beam_size=5, max_caption_len=40, length_penalty=1.0, mask_threshold=0.5))

optim_wrapper = {{_base_.tiny_optim_wrapper}}
max_iters = 2000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=100, end=max_iters, eta_min=1e-5),
]
# A single-task config leaves the other tasks' parameters without gradients.
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)
