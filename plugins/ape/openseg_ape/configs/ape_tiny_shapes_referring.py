# Referring expressions of `shapes` val with a checkpoint of ape_tiny_shapes.py: each
# expression is a sentence prompt, fused with its image alone; its best box gives P@0.5
# (ReferringLocalizationMetric: refer_loc/Acc@0.5) and its mask cIoU.
_base_ = ['./ape_tiny_shapes.py']

test_dataloader = dict(_delete_=True, batch_size=8, num_workers=1, persistent_workers=True,
                       drop_last=False, sampler=dict(type='DefaultSampler', shuffle=False),
                       dataset={{_base_.referring_val}})
test_evaluator = {{_base_.referring_evaluator}}
val_dataloader = test_dataloader
val_evaluator = test_evaluator
