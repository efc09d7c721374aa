# PixelLLM at the released models' scale: EVA02 ViT-L/14 (trained) and SAM ViT-H (frozen),
# both at 384 x 384, SAM's 24 x 24 grid resized (bicubic) to EVA's 27 x 27 and concatenated
# (1024 + 256 channels); SAM's frozen prompt encoder; the prompt feature extractor of the
# released configs (6 layers at width 512, 32 tokens through their own 1024-wide projections,
# then d_model); Flan-T5-XL frozen with LoRA (rank 32, alpha 64, q and v of every attention);
# the trace head (LayerNorm, 3 x 512 GELU, 2 points per token).
#
# Every pretrained part loads from the local paths below (docs/plugins/pixelllm.md says where
# each comes from); building fails in one line naming the files that are missing.
pretrained_root = 'checkpoints/pixelllm/'
eva02_file = pretrained_root + 'eva02_large_patch14_clip_336.safetensors'
sam_dir = pretrained_root + 'sam-vit-huge/'
t5_dir = pretrained_root + 'flan-t5-xl/'
# Flan-T5-XL's architecture (its config.json), for building it without weights (tests, meta
# device) with `language_model=dict(config=flan_t5_xl, pretrained=None)`.
flan_t5_xl = dict(vocab_size=32128, d_model=2048, d_kv=64, d_ff=5120, num_layers=24,
                  num_decoder_layers=24, num_heads=32, relative_attention_num_buckets=32,
                  dropout_rate=0.1, feed_forward_proj='gated-gelu', decoder_start_token_id=0,
                  eos_token_id=1, pad_token_id=0, tie_word_embeddings=False)
crop = 384
model = dict(
    type='pixelllm.PixelLLM',
    # Raw RGB in; each encoder normalises with its own statistics (CLIP's for EVA02,
    # ImageNet's for SAM), padded pixels set to 0 afterwards, as the released code does.
    data_preprocessor=dict(type='MultiTaskDataPreprocessor', mean=[0.0, 0.0, 0.0],
                           std=[1.0, 1.0, 1.0], bgr_to_rgb=True, pad_size_divisor=crop,
                           pad_mask=True, mask_pad_value=0),
    image_encoder=dict(type='pixelllm.ImageEncoders', encoders=dict(
        eva=dict(backbone=dict(type='pixelllm.TimmViTEncoder',
                               model_name='eva02_large_patch14_clip_336', img_size=crop,
                               pretrained=eva02_file, frozen=False,
                               model_kwargs=dict(drop_path_rate=0.1)),
                 mean=[122.770938, 116.7460125, 104.09373615],
                 std=[68.5005327, 66.6321579, 70.32316305]),
        sam=dict(backbone=dict(type='pixelllm.SamViTEncoder', img_size=crop, pretrained=sam_dir,
                               frozen=True),
                 mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]))),
    prompt_encoder=dict(type='pixelllm.LocationPromptEncoder', embed_dims=256,
                        pretrained=sam_dir, frozen=True),
    prompt_extractor=dict(type='pixelllm.PromptFeatureExtractor', embed_dims=512, depth=6,
                          num_heads=8, mlp_dims=2048, num_tokens=32, token_channels=1024),
    language_model=dict(type='pixelllm.T5LanguageModel', pretrained=t5_dir, frozen=True,
                        lora=dict(r=32, lora_alpha=64, target_modules=['q', 'v'])),
    tokenizer=dict(path=t5_dir),
    trace_head=dict(type='pixelllm.TraceHead', hidden_channels=512, depth=4, num_points=2),
    token_alignment='relative', max_caption_len=128, max_context_len=8,
    test_cfg=dict(beam_size=4, length_penalty=0.6, no_repeat_ngram_size=3))
optim_wrapper = dict(
    type='OptimWrapper', constructor='FrozenAwareOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=5e-5, weight_decay=0.0, betas=(0.9, 0.999)))
max_iters = 10000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=2500)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=250, end=max_iters, eta_min=0.0),
]
