# ODISE with category-label supervision on `shapes` (tiny; see _base_/odise_tiny.py): the
# mask embeddings are classified against the small CLIP's embeddings of the class names,
# and at inference combined with that CLIP's view of each mask (held-out classes weigh
# CLIP 0.7, seen ones 0.3, the official label model's weights).
_base_ = ['openseg_core::_base_/default_runtime.py', '_base_/odise_tiny.py']

embed = 64
model = dict(
    type='odise.CategoryODISE',
    data_preprocessor={{_base_.odise_data_preprocessor}},
    backbone={{_base_.odise_tiny_backbone}},
    pixel_decoder={{_base_.tiny_pixel_decoder_odise}},
    query_decoder={{_base_.tiny_query_decoder}},
    text_encoder={{_base_.tiny_text_encoder}},
    mask_embed=dict(type='odise.PooledMaskEmbed', mask_dim=embed, hidden_dim=embed,
                    embed_dim=embed),
    head=dict(type='odise.CategoryHead', embed_dim=embed, text_dim=64),
    criterion={{_base_.tiny_criterion}},
    postprocessor={{_base_.tiny_postprocessor}},
    # The small CLIP is convolutional: MaskCLIP needs a ViT. It sees each mask as a crop
    # with the pixels outside greyed (the core reference model's choice on `shapes`).
    region_ensemble=dict(type='odise.SynonymRegionEnsemble', region='masked_crop',
                         alpha_seen=0.3, alpha_unseen=0.7,
                         seen_classes={{_base_.seen_classes}}))
