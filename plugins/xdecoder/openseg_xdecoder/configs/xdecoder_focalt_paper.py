# X-Decoder at the paper's size with the official Focal-T architecture, so that the official
# checkpoint (xdecoder_focalt_last.pt) converts onto it key for key
# once converted (tools/convert_checkpoint.py xdecoder_official SRC DST; load_from=DST):
# FocalNet-T (focal_dw blocks), MaskFormer's transformer-encoder FPN (6 encoder layers on res5,
# width 512), 101 latent queries (100 object + 1 global), 9 decoder layers after the initial
# prediction (the official DEC_LAYERS=10 counts that one), hidden 512, a 12-layer width-512
# causal text encoder with QuickGELU (open_clip ViT-B-16-quickgelu's text tower = the official
# UniCL transformer), CLIP tokenizer, context 77; 12544 points, oversample 3, importance 0.75.
# The data pipeline is `shapes`' with COCO paths: point data_root at COCO to train.
_base_ = ['openseg_core::_base_/shapes_panoptic.py',
          'openseg_core::_base_/default_runtime.py', '_base_/xdecoder_tiny.py']

hidden = 512
model = dict(
    backbone=dict(_delete_=True, type='xdecoder.FocalNet', embed_dim=96, depths=(2, 2, 6, 2),
                  focal_levels=(3, 3, 3, 3), focal_windows=(3, 3, 3, 3), drop_path_rate=0.3),
    pixel_decoder=dict(_delete_=True, type='xdecoder.TransformerEncoderFPN',
                       in_channels=(96, 192, 384, 768), feat_channels=hidden,
                       out_channels=hidden, num_encoder_layers=6),
    # Official numerics (docs/plugins/xdecoder.md, "Fidelity"): the re-weighted global query,
    # grounding copies for referring, token + learned caption positions, bicubic antialiased
    # attention masks.
    query_decoder=dict(
        num_queries=101, text_dims=hidden, context_length=77, embed_dims=hidden,
        memory_channels=hidden, num_feature_levels=3, global_query='reweighted',
        referring='grounding_copies', caption_query_pos='token_and_learned',
        attn_mask_interpolation='bicubic_antialias',
        transformer_decoder=dict(
            num_layers=9,
            layer_cfg=dict(
                self_attn_cfg=dict(embed_dims=hidden, num_heads=8),
                cross_attn_cfg=dict(embed_dims=hidden, num_heads=8),
                ffn_cfg=dict(embed_dims=hidden, feedforward_channels=2048)))),
    text_encoder=dict(_delete_=True, type='OpenCLIPTextEncoder',
                      model_name='ViT-B-16-quickgelu', embed_dim=hidden, pretrained=None,
                      templates=('{}.', 'openai_imagenet'), train_templates='sample',
                      layer_norm_eps=1e-12, frozen=False),
    strip_from_class_names=('-other', '-merged', '-stuff'),
    project_text_queries=True,
    head=dict(embed_dims=hidden, proj_dims=hidden, token_dims=hidden, init_temperature=0.07,
              backbone_dims=768, max_logit_scale=None),
    criterion=dict(num_points=12544, matcher=dict(num_points=12544)),
    postprocessor=dict(object_mask_thr=0.8, max_per_image=100,
                       mask_interpolation='bicubic_antialias'),
    # The official release decodes greedily for 50 tokens and keeps the first sentence; the
    # paper's beam 5 is beam_size=5.
    test_cfg=dict(beam_size=1, max_caption_len=50, caption_stop='.'))

data_root = 'data/coco/'
# Test-time size of detectron2's COCO configs (shorter side 800, longer <= 1333) instead of the
# tiny models' 128 px; inference (tools/demo.py) resizes the same way.
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='LoadPanopticAnnotations', with_bbox=True, with_mask=True, with_seg=True,
         backend_args=None),
    dict(type='PackOpenSegInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
max_iters = 368750
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=5000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# Paper: AdamW 1e-4, backbone and language encoder at 0.1x, step decay at 0.889 / 0.963.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
    paramwise_cfg=dict(custom_keys=dict(backbone=dict(lr_mult=0.1),
                                        text_encoder=dict(lr_mult=0.1)), norm_decay_mult=0.0),
    clip_grad=dict(max_norm=0.01, norm_type=2))
param_scheduler = [dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
                        milestones=[327778, 355092], gamma=0.1)]
