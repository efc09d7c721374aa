import torch

from openseg_core.models import MaskPostProcessor


def test_panoptic_semantic_instance_on_a_hand_case():
    # 2 things + 1 stuff; query 0: thing 0 on the left, query 1: stuff on the right,
    # query 2: "no object".
    masks = torch.full((3, 8, 8), -10.0)
    masks[0, :, :4] = 10
    masks[1, :, 4:] = 10
    cls = torch.full((3, 4), -10.0)
    cls[0, 0] = cls[1, 2] = cls[2, 3] = 10
    meta = dict(img_shape=(8, 8), ori_shape=(8, 8))
    result = MaskPostProcessor(max_per_image=5).predict(cls[None], masks[None], [meta],
                                                        num_things=2, num_stuff=1)[0]
    pan = result['pan_results'].sem_seg[0]
    assert (pan[:, :4] == 0 + 1000).all()  # thing 0, instance 1 (mmdet's INSTANCE_OFFSET)
    assert (pan[:, 4:] == 2).all()
    sem = result['sem_results'].sem_seg[0]
    assert (sem[:, :4] == 0).all() and (sem[:, 4:] == 2).all()
    ins = result['ins_results']
    best = ins.scores.argmax()
    assert ins.labels[best] == 0 and ins.masks[best][:, :4].all()
    assert (ins.labels < 2).all()  # stuff never becomes an instance
