# Dense object captioning on `shapes`: a CenterNet proposal head (mmdet's CenterNetUpdateHead,
# CenterNet2's first stage) on a simple feature pyramid of the image features proposes boxes,
# each captioned through the location prompt. Trained end to end: proposal losses plus the
# captions of the (jittered) ground-truth boxes. Metric: Visual Genome dense-captioning mAP.
_base_ = ['openseg_core::_base_/default_runtime.py', '_base_/pixelllm_tiny.py',
          '_base_/shapes_data.py']

model = dict(
    proposal_head=dict(
        neck=dict(type='pixelllm.SimpleFeaturePyramid', out_channels=64,
                  scales=(1.0, 0.5, 0.25)),
        head=dict(type='CenterNetUpdateHead', num_classes=1, in_channels=64,
                  feat_channels=64, stacked_convs=2, strides=[8, 16, 32],
                  # box sizes per level (CenterNet2's overlapping ranges, scaled to the
                  # 10-55 px shapes of a 128-px image)
                  regress_ranges=((0, 32), (24, 64), (48, 1e8)),
                  hm_min_radius=2, more_pos_thresh=0.2, more_pos_topk=9, soft_weight_on_reg=False,
                  loss_cls=dict(type='GaussianFocalLoss', pos_weight=0.25, neg_weight=0.75,
                                loss_weight=1.0),
                  loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
                  norm_cfg=dict(type='GN', num_groups=16, requires_grad=True),
                  test_cfg=dict(nms_pre=200, min_bbox_size=0, score_thr=0.05,
                                nms=dict(iou_threshold=0.5), max_per_img=20))),
    # each box's caption reads only the cells under the box, as location-conditioned
    # captioning's does (mAP 84.7 -> 89.6; docs/plugins/pixelllm.md, Figures)
    prompt_extractor=dict(box_attention=True),
    test_cfg=dict(num_proposals=10, proposal_score_thr=0.1))
train_dataloader = dict(batch_size=8, num_workers=1, persistent_workers=True,
                        sampler=dict(type='InfiniteSampler', shuffle=True),
                        dataset={{_base_.dense_train}})
val_dataloader = dict(batch_size=8, num_workers=1, persistent_workers=True, drop_last=False,
                      sampler=dict(type='DefaultSampler', shuffle=False),
                      dataset={{_base_.dense_val}})
test_dataloader = val_dataloader
val_evaluator = [dict(type='DenseCaptionMetric')]
test_evaluator = val_evaluator
