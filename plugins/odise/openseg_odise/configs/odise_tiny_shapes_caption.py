# ODISE with caption supervision on `shapes` (tiny; see _base_/odise_tiny.py): masks learned
# class-agnostic from the panoptic annotations, the mask embeddings grounded in the noun
# phrases of each image's captions (8 per image) against the batch's other captions; at
# inference class names take the nouns' place, combined with the small CLIP's view of each
# mask (the official caption model's weights 0.35 / 0.65).
_base_ = ['openseg_core::_base_/default_runtime.py', '_base_/odise_tiny.py']

embed = 64
model = dict(
    type='odise.CaptionODISE',
    data_preprocessor={{_base_.odise_data_preprocessor}},
    backbone={{_base_.odise_tiny_backbone}},
    pixel_decoder={{_base_.tiny_pixel_decoder_odise}},
    query_decoder={{_base_.tiny_query_decoder}},
    text_encoder={{_base_.tiny_text_encoder}},
    mask_embed=dict(type='odise.PooledMaskEmbed', mask_dim=embed, hidden_dim=embed,
                    embed_dim=embed),
    head=dict(type='odise.ObjectnessHead', in_channels=embed),
    word_head=dict(type='odise.WordHead', embed_dim=embed, text_dim=64),
    grounding_loss=dict(type='odise.MaskGroundingLoss', softmax_over='queries'),
    num_words=8,
    criterion={{_base_.tiny_criterion}},
    postprocessor={{_base_.tiny_postprocessor}},
    region_ensemble=dict(type='odise.SynonymRegionEnsemble', region='masked_crop',
                         alpha_seen=0.35, alpha_unseen=0.65,
                         seen_classes={{_base_.seen_classes}}))
# Each training image brings its captions (captions_train.json, the same images).
train_dataloader = dict(dataset=dict(type='odise.PanopticCaptionsDataset',
                                     caption_file='annotations/captions_train.json'))
