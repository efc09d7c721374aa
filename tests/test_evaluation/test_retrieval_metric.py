import math

import pytest
import torch

from openseg_core.evaluation import RetrievalMetric
from openseg_core.registry import METRICS


def _unit(degrees, norm=1.0):
    rad = math.radians(degrees)
    return torch.tensor([math.cos(rad), math.sin(rad)]) * norm


def _evaluate(samples, topk=(1, 2, 3)):
    metric = RetrievalMetric(topk=topk)
    metric.process({}, samples)
    return metric.compute_metrics(metric.results)


def test_hand_computed_recalls():
    # 2-D embeddings at these angles, so cosine similarity falls with the angle between them.
    # Norms differ on purpose: the score is cosine, not the dot product.
    images = [0, 90, 45]
    captions = [[10, 100], [60, 135], [330, 280]]
    samples = [dict(img_id=i, pred_image_embed=_unit(a, norm=i + 1),
                    pred_text_embeds=torch.stack([_unit(c, norm=3.0) for c in caps]))
               for i, (a, caps) in enumerate(zip(images, captions))]
    result = _evaluate(samples)
    # Image -> text, angular distance of each image's best own caption vs the others':
    #   img 0: own 10 beats everything                      -> rank 0
    #   img 1: own 30 (60 deg); text at 100 deg is 10 away  -> rank 1
    #   img 2: own 75 (330 deg); 10, 100 and 60 deg closer  -> rank 3
    assert result['i2t_R@1'] == pytest.approx(100 / 3)
    assert result['i2t_R@2'] == pytest.approx(200 / 3)
    assert result['i2t_R@3'] == pytest.approx(200 / 3)
    # Text -> image (images at 0, 90, 45 deg), own image's rank per caption:
    #   10 -> 0;  100 -> 2 (90 and 45 closer than 0);  60 -> 1 (45 closer than 90);
    #   135 -> 0;  330 -> 1 (0 closer than 45);  280 -> 1 (0 at 80 closer than 45 at 125)
    assert result['t2i_R@1'] == pytest.approx(100 * 2 / 6)
    assert result['t2i_R@2'] == pytest.approx(100 * 5 / 6)
    assert result['t2i_R@3'] == pytest.approx(100.0)
    assert list(result) == ['i2t_R@1', 'i2t_R@2', 'i2t_R@3', 't2i_R@1', 't2i_R@2', 't2i_R@3']


def test_constant_embeddings_do_not_get_perfect_recall():
    # Every score ties; ties with a wrong answer count against the model.
    samples = [dict(img_id=i, pred_image_embed=torch.ones(4), pred_text_embeds=torch.ones(2, 4))
               for i in range(3)]
    result = _evaluate(samples, topk=(1, 4, 5))
    assert result['i2t_R@1'] == 0 and result['t2i_R@1'] == 0
    assert result['i2t_R@4'] == 0 and result['i2t_R@5'] == 100  # 4 wrong texts tie ahead


def test_own_captions_do_not_compete_and_counts_may_differ():
    # Image 0 has three identical captions, image 1 one: all tie with their own image only.
    samples = [dict(img_id=0, pred_image_embed=_unit(0), pred_text_embeds=_unit(0).repeat(3, 1)),
               dict(img_id=1, pred_image_embed=_unit(90), pred_text_embeds=_unit(90)[None])]
    result = _evaluate(samples, topk=(1,))
    assert result == {'i2t_R@1': 100.0, 't2i_R@1': 100.0}


def test_registered_and_prefixed():
    metric = METRICS.build(dict(type='RetrievalMetric'))
    metric.process({}, [dict(img_id=0, pred_image_embed=torch.ones(3),
                             pred_text_embeds=torch.ones(1, 3))])
    assert 'retrieval/t2i_R@10' in metric.evaluate(1)


@pytest.mark.parametrize('sample, message', [
    (dict(img_id=5, pred_image_embed=torch.ones(3)), 'img_id=5 has no pred_text_embeds'),
    (dict(img_id=5, pred_image_embed=torch.ones(3), pred_text_embeds=torch.ones(0, 3)),
     r'must be \(D,\) and \(N, D\)'),
    (dict(img_id=5, pred_image_embed=torch.ones(3), pred_text_embeds=torch.ones(2, 4)),
     r'must be \(D,\) and \(N, D\)'),
])
def test_bad_input_is_a_clear_error(sample, message):
    with pytest.raises(ValueError, match=message):
        RetrievalMetric().process({}, [sample])
