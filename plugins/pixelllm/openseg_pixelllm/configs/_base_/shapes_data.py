# `shapes` for PixelLLM's tasks: Localized-Narratives JSONL (a trace point per word), COCO
# captions and RefCOCO-style refs, as the generator writes them (docs/datasets.md). No flips or
# crops: phrases say "on the left" and traces are tied to the pixels.
meta = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')
root = 'data/shapes/'

narrative_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='pixelllm.LoadNarrativeTargets'),
    dict(type='SetTask', task='narrative'),
    dict(type='pixelllm.PackPixelLLMInputs', meta_keys=meta),
]
narrative_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='pixelllm.LoadNarrativeTargets'),
    dict(type='SetTask', task='narrative'),
    dict(type='pixelllm.PackPixelLLMInputs',
         meta_keys=meta + ('gt_masks', 'gt_bboxes_labels')),
]
# The shapes CLIP reads ShapesCLIP-RN's inputs: word boxes from the points inside each word's
# time span (the generator writes one point per word; interpolating would blend neighbours).
narratives_train = dict(type='pixelllm.NarrativesDataset', data_root=root,
                        ann_file='annotations/narratives_train.jsonl', word_boxes='inside',
                        data_prefix=dict(img='images/train/'),
                        pipeline=narrative_train_pipeline)
narratives_val = dict(type='pixelllm.NarrativesDataset', data_root=root,
                      ann_file='annotations/narratives_val.jsonl', word_boxes='inside',
                      instances_file='annotations/instances_val.json',
                      data_prefix=dict(img='images/val/'), test_mode=True,
                      pipeline=narrative_test_pipeline)
caption_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='SetTask', task='captioning'),
    dict(type='pixelllm.PackPixelLLMInputs', meta_keys=meta),
]
captions_train = dict(type='CocoCaptionsDataset', data_root=root,
                      ann_file='annotations/captions_train.json',
                      data_prefix=dict(img='images/train/'), pipeline=caption_pipeline)

# 16,000 training images, the first 800 those of `data/shapes` (the trace model learns 800
# images' points by heart, and names shapes better the more images it sees). Generate them
# once (under 2 minutes, 0.7 GB): `openseg shapes data/shapes_16k --train 16000`.
root_16k = 'data/shapes_16k/'
narratives_train_16k = dict(narratives_train, data_root=root_16k)
captions_train_16k = dict(captions_train, data_root=root_16k)

referring_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='SetTask', task='referring'),
    dict(type='pixelllm.PackPixelLLMInputs', meta_keys=meta),
]
# The metrics score the original-resolution box and mask: keep them in the metainfo.
referring_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='SetTask', task='referring'),
    dict(type='pixelllm.PackPixelLLMInputs', meta_keys=meta + ('gt_bboxes', 'gt_masks')),
]
referring_train = dict(type='ReferringDataset', data_root=root,
                       refs_file='annotations/refs_train.json', split='train',
                       ann_file='annotations/instances_train.json',
                       data_prefix=dict(img='images/train/'),
                       pipeline=referring_train_pipeline)
referring_val = dict(type='ReferringDataset', data_root=root,
                     refs_file='annotations/refs_val.json', split='val',
                     ann_file='annotations/instances_val.json',
                     data_prefix=dict(img='images/val/'), test_mode=True,
                     pipeline=referring_test_pipeline)

# Location-conditioned captioning: a referred object's box in, its sentence out.
loc_caption_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='SetTask', task='loc_captioning'),
    dict(type='pixelllm.PackPixelLLMInputs', meta_keys=meta),
]
loc_caption_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='SetTask', task='loc_captioning'),
    dict(type='pixelllm.PackPixelLLMInputs', meta_keys=meta + ('gt_bboxes',)),
]
loc_caption_train = dict(referring_train, pipeline=loc_caption_train_pipeline)
loc_caption_val = dict(type='pixelllm.ObjectCaptionsDataset', data_root=root,
                       refs_file='annotations/refs_val.json', split='val', per='object',
                       ann_file='annotations/instances_val.json',
                       data_prefix=dict(img='images/val/'), test_mode=True,
                       pipeline=loc_caption_test_pipeline)

# Dense captioning: every referred object of an image with its sentences.
dense_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='SetTask', task='dense_captioning'),
    dict(type='pixelllm.PackPixelLLMInputs', meta_keys=meta + ('gt_captions',)),
]
dense_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='SetTask', task='dense_captioning'),
    dict(type='pixelllm.PackPixelLLMInputs', meta_keys=meta + ('gt_bboxes', 'gt_captions')),
]
dense_train = dict(type='pixelllm.ObjectCaptionsDataset', data_root=root,
                   refs_file='annotations/refs_train.json', split='train', per='image',
                   ann_file='annotations/instances_train.json',
                   data_prefix=dict(img='images/train/'), pipeline=dense_train_pipeline)
dense_val = dict(type='pixelllm.ObjectCaptionsDataset', data_root=root,
                 refs_file='annotations/refs_val.json', split='val', per='image',
                 ann_file='annotations/instances_val.json',
                 data_prefix=dict(img='images/val/'), test_mode=True,
                 pipeline=dense_test_pipeline)
colours = ['red', 'green', 'blue', 'yellow', 'purple', 'white']
shapes = ['circle', 'square', 'triangle', 'cross', 'diamond', 'star']
