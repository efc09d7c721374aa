# ODISE trained with COCO captions (official odise_caption_coco_50e) at the paper's scale;
# see _base_/odise_paper.py. Loads the converted official checkpoint
# (tools/convert_checkpoint.py odise_official odise_caption_coco_50e.pth OUT).
_base_ = ['openseg_core::_base_/default_runtime.py', '_base_/odise_paper.py']

model = dict(
    type='odise.CaptionODISE',
    data_preprocessor={{_base_.odise_data_preprocessor}},
    backbone={{_base_.paper_backbone}},
    pixel_decoder={{_base_.paper_pixel_decoder}},
    query_decoder={{_base_.paper_query_decoder}},
    text_encoder={{_base_.paper_text_encoder}},
    mask_embed={{_base_.paper_mask_embed}},
    head=dict(type='odise.ObjectnessHead', in_channels=256),
    word_head=dict(type='odise.WordHead', embed_dim=256, text_dim=768),
    grounding_loss=dict(type='odise.MaskGroundingLoss', softmax_over='queries'),
    num_words=8, word_template='a photo of a {}.',
    criterion={{_base_.paper_criterion}},
    postprocessor={{_base_.paper_postprocessor}},
    region_ensemble=dict(type='odise.SynonymRegionEnsemble', region='mask_clip',
                         alpha_seen=0.35, alpha_unseen=0.65, seen_classes='coco_panoptic'))
optim_wrapper = {{_base_.paper_optim_wrapper}}
default_hooks = dict(checkpoint=dict(interval=4500))
# Each training image brings its COCO captions.
train_dataloader = dict(dataset=dict(type='odise.PanopticCaptionsDataset',
                                     caption_file='annotations/captions_train2017.json'))
