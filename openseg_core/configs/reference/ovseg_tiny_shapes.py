# The core's reference open-vocabulary segmentor on `shapes`, standing on a pretrained CLIP as
# FC-CLIP does: the small CLIP trained on `shapes` image-caption pairs (docs/pretrained_clip.md)
# gives the frozen backbone (its convolutional image tower) and the frozen text tower, and at
# inference classifies every mask with its image side too, ensembled with the learned
# classifier. Same decoder sizes and training budget as ovseg_tiny_shapes_scratch.py.
_base_ = ['./ovseg_tiny_shapes_scratch.py']

model = dict(
    data_preprocessor={{_base_.clip_data_preprocessor}},
    backbone=dict(_delete_=True, **_base_.shapes_clip_backbone),
    pixel_decoder=dict(in_channels={{_base_.shapes_clip_channels}}),
    text_encoder=dict(_delete_=True, **_base_.shapes_clip_text_encoder),
    # Pretrained text embeddings are spread apart: CLIP's initial temperature.
    head=dict(init_temperature=0.07),
    # CLIP sees each mask as a crop around it, the pixels outside the mask greyed out (its
    # 4 x 4 map of a 128 px scene is too coarse to pool in, and an unmasked crop of a stuff
    # region shows the shapes on it: docs/reference_model.md); FC-CLIP's weights, the classes
    # of the training split `seen`, the others (held out) trusting CLIP more.
    region_ensemble=dict(
        type='CLIPRegionEnsemble', region='masked_crop', alpha_seen=0.4, alpha_unseen=0.8,
        seen_classes=('circle', 'square', 'triangle', 'cross', 'sky', 'grass', 'sand',
                      'water')))
