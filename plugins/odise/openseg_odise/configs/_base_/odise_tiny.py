# ODISE in miniature, sized to train on `shapes` on a 2-core CPU: the official wiring (8 maps:
# VAE encoder blocks 5, 7, UNet decoder blocks 2, 5, 8, 11, VAE decoder blocks 2, 5, projected
# and summed into strides 4-32), with random tiny UNet and VAE shaped like SD v1's (same block
# structure, widths 16-64 / 8-32), the small CLIP trained on `shapes` for the implicit
# captioner, the class and noun embeddings and the CLIP head, and the core reference model's
# decoder sizes (2 deformable encoder layers, 4 decoder layers, 20 queries, width 64).
# A training step costs about 2.4 reference-model steps (measured in turns in one process).
_base_ = ['openseg_core::_base_/shapes_panoptic.py',
          'openseg_core::_base_/models/tiny_shapes_parts.py']

embed = 64
shapes_clip = 'openseg://shapes_clip'
# SD v1's UNet block structure (3 cross-attention down blocks + 1 plain, mirrored up), tiny
# widths; cross-attention reads the small CLIP's 64-wide token features.
tiny_unet = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=2,
    down_block_types=('CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D',
                      'DownBlock2D'),
    up_block_types=('UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D',
                    'CrossAttnUpBlock2D'),
    block_out_channels=(16, 32, 64, 64), cross_attention_dim=64, attention_head_dim=4,
    norm_num_groups=16)
tiny_vae = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
    down_block_types=('DownEncoderBlock2D',) * 4, up_block_types=('UpDecoderBlock2D',) * 4,
    block_out_channels=(8, 16, 32, 32), norm_num_groups=8, sample_size=64,
    scaling_factor=0.18215)
# The small CLIP's tokens condition the UNet (the empty caption over its 77 positions).
tiny_cond_encoder = dict(type='OpenCLIPTextEncoder', model_name='ShapesCLIP-RN',
                         pretrained=shapes_clip, frozen=True)
odise_tiny_backbone = dict(
    type='odise.DiffusionBackbone',
    extractor=dict(unet=tiny_unet, vae=tiny_vae, cond_encoder=tiny_cond_encoder,
                   noise_size=(16, 16)),
    captioner=dict(image_encoder=dict(type='OpenCLIPImageBackbone', model_name='ShapesCLIP-RN',
                                      pretrained=shapes_clip, frozen=True)),
    # `shapes` images are 128 px: one window, seen by the diffusion model at its full size as
    # the official model sees its 512 px windows. At half size (input_size=64, noise (8, 8))
    # a step is 1.3x cheaper but things PQ on val falls from 17.3 to 8.0 (docs: Figures).
    window_size=128, input_size=128, projection_dim=embed, norm_groups=16)
# Images reach the model in [0, 1] (the official normalisation; each frozen part applies its
# own), padded to 64 (the latent's stride 8 times the UNet's 8).
odise_data_preprocessor = dict(
    type='MultiTaskDataPreprocessor', mean=[0.0, 0.0, 0.0], std=[255.0, 255.0, 255.0],
    bgr_to_rgb=True, pad_size_divisor=64, pad_mask=True, mask_pad_value=0, pad_seg=True,
    seg_pad_value=255)
tiny_pixel_decoder_odise = dict(
    type='MSDeformAttnPixelDecoder', in_channels=[embed] * 4, strides=[4, 8, 16, 32],
    feat_channels=embed, out_channels=embed, num_outs=3,
    norm_cfg=dict(type='GN', num_groups=16), act_cfg=dict(type='ReLU'),
    encoder=dict(num_layers=2, layer_cfg=dict(
        self_attn_cfg=dict(embed_dims=embed, num_heads=4, num_levels=3, num_points=4,
                           dropout=0.0, batch_first=True),
        ffn_cfg=dict(embed_dims=embed, feedforward_channels=4 * embed, num_fcs=2,
                     ffn_drop=0.0, act_cfg=dict(type='ReLU', inplace=True)))),
    positional_encoding=dict(num_feats=embed // 2, normalize=True))
tiny_query_decoder = dict(
    type='MaskedAttentionQueryDecoder', num_queries=20, embed_dims=embed,
    memory_channels=embed, num_feature_levels=3,
    transformer_decoder={{_base_.tiny_transformer_decoder}})
tiny_text_encoder = dict(type='OpenCLIPTextEncoder', model_name='ShapesCLIP-RN',
                         pretrained=shapes_clip, frozen=True)
# Seen (training) classes of `shapes`; diamond and star are held out.
seen_classes = ('circle', 'square', 'triangle', 'cross', 'sky', 'grass', 'sand', 'water')
tiny_postprocessor = dict(type='MaskPostProcessor', panoptic_on=True, semantic_on=True,
                          instance_on=True, object_mask_thr=0.5, iou_thr=0.8,
                          max_per_image=50)

max_iters = 2000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = {{_base_.tiny_optim_wrapper}}
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=100, end=max_iters, eta_min=1e-5),
]
