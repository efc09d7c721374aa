# ODISE trained with COCO category labels (official odise_label_coco_50e) at the paper's
# scale; see _base_/odise_paper.py. Loads the converted official checkpoint
# (tools/convert_checkpoint.py odise_official odise_label_coco_50e.pth OUT).
_base_ = ['openseg_core::_base_/default_runtime.py', '_base_/odise_paper.py']

model = dict(
    type='odise.CategoryODISE',
    data_preprocessor={{_base_.odise_data_preprocessor}},
    backbone={{_base_.paper_backbone}},
    pixel_decoder={{_base_.paper_pixel_decoder}},
    query_decoder={{_base_.paper_query_decoder}},
    text_encoder={{_base_.paper_text_encoder}},
    mask_embed={{_base_.paper_mask_embed}},
    head=dict(type='odise.CategoryHead', embed_dim=256, text_dim=768),
    criterion={{_base_.paper_criterion}},
    postprocessor={{_base_.paper_postprocessor}},
    class_template='{}',
    # MaskCLIP on the captioner's CLIP (shared), CLIP weighted 0.3 on classes seen in
    # training (COCO panoptic's), 0.7 on the others; seen = any synonym among them.
    region_ensemble=dict(type='odise.SynonymRegionEnsemble', region='mask_clip',
                         alpha_seen=0.3, alpha_unseen=0.7, seen_classes='coco_panoptic'))
optim_wrapper = {{_base_.paper_optim_wrapper}}
default_hooks = dict(checkpoint=dict(interval=4500))
