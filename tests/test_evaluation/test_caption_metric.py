import pytest

from openseg_core.evaluation import CaptionMetric, tokenize_caption
from openseg_core.registry import METRICS

REFS = [['a red circle above a blue square', 'a circle over a square on white'],
        ['a green triangle lying on the grass', 'a small triangle in a field'],
        ['two brown dogs play in the snow', 'dogs playing together in deep snow']]


def _score(preds, refs=REFS):
    metric = CaptionMetric()
    metric.process({}, [dict(img_id=i, pred_caption=p, captions=r)
                        for i, (p, r) in enumerate(zip(preds, refs))])
    return metric.compute_metrics(metric.results)


def test_exact_match_is_100_and_partial_match_in_between():
    perfect = _score([r[0] for r in REFS])
    assert perfect['BLEU-4'] == pytest.approx(100, abs=1e-4)
    partial = _score(['a red circle above a green lawn', 'a green triangle on a table',
                      'two cats sleep in the snow'])
    assert 0 < partial['BLEU-4'] < 100
    assert 0 < partial['CIDEr'] < perfect['CIDEr']


def test_cider_prefers_the_right_image_to_a_swapped_caption():
    right = _score([r[0] for r in REFS])
    swapped = _score([REFS[1][0], REFS[2][0], REFS[0][0]])
    assert right['CIDEr'] > 100 > swapped['CIDEr']  # papers' scale: 100 x CIDEr-D
    assert swapped['BLEU-4'] < 1


def test_case_and_punctuation_do_not_count():
    # What the COCO evaluation's PTB tokenisation + punctuation removal produces.
    assert tokenize_caption("A Dog's toy, on the mat.") == "a dog 's toy on the mat"
    assert tokenize_caption("He can't see the U.S. flag (far away)...") == \
        'he ca n\'t see the u.s. flag -lrb- far away -rrb-'
    shouted = _score([r[0].upper() + '!' for r in REFS])
    assert shouted['BLEU-4'] == pytest.approx(100, abs=1e-4)


def test_registered_and_prefixed():
    metric = METRICS.build(dict(type='CaptionMetric'))
    metric.process({}, [dict(img_id=i, pred_caption=r[0], captions=r)
                        for i, r in enumerate(REFS)])
    assert set(metric.evaluate(len(REFS))) == {'caption/BLEU-4', 'caption/CIDEr'}


@pytest.mark.parametrize('sample, field', [
    (dict(img_id=7, captions=['a cat']), 'pred_caption'),
    (dict(img_id=7, pred_caption='a cat', captions=[]), 'captions'),
    (dict(img_id=7, pred_caption='a cat'), 'captions'),
])
def test_missing_prediction_or_references_is_a_clear_error(sample, field):
    with pytest.raises(ValueError, match=rf'img_id=7 has {field}=.*needs'):
        CaptionMetric().process({}, [sample])
