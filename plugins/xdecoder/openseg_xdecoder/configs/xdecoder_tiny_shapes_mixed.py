# X-Decoder's pre-training recipe in miniature: every iteration holds a panoptic batch, a
# referring batch and an image-text batch (their own sizes, via mmdet's MultiSourceSampler),
# trained jointly. Validation is panoptic; evaluate the other tasks of the checkpoint with the
# referring and captioning configs (same model):
#   python tools/test.py xdecoder::xdecoder_tiny_shapes_referring.py CKPT
_base_ = ['openseg_core::_base_/shapes_panoptic.py',
          'openseg_core::_base_/default_runtime.py', '_base_/xdecoder_tiny.py',
          '_base_/shapes_referring.py', '_base_/shapes_captions.py']

panoptic_batch, referring_batch, caption_batch = 4, 4, 8
batch_size = panoptic_batch + referring_batch + caption_batch
train_dataloader = dict(
    _delete_=True, batch_size=batch_size, num_workers=1, persistent_workers=True,
    sampler=dict(type='MultiSourceSampler', batch_size=batch_size,
                 source_ratio=[panoptic_batch, referring_batch, caption_batch]),
    dataset=dict(type='ConcatDataset',
                 # The vocabulary (thing/stuff classes) is the panoptic set's, the first.
                 ignore_keys=['classes', 'thing_classes', 'stuff_classes', 'palette',
                              'dataset_type', 'task_name'],
                 datasets=[{{_base_.train_dataloader.dataset}}, {{_base_.referring_train}},
                           {{_base_.captions_train}}]))

# As in the paper, the text encoder trains at 0.1x the learning rate; its token table, which is
# also the caption vocabulary, at the full rate (random token embeddings start near zero).
# The official retrieval ensemble, as in the captioning config.
model = dict(text_encoder=dict(frozen=False), head=dict(backbone_dims=128))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    'text_encoder': dict(lr_mult=0.1),
    'text_encoder.tower.token_embedding': dict(lr_mult=1.0)}))

max_iters = 1200
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=100, end=max_iters, eta_min=1e-5),
]
