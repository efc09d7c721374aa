import pytest

from openseg_core.evaluation import CaptionKeywordMetric


def test_keywords_of_the_references_must_be_said():
    metric = CaptionKeywordMetric(groups=dict(colour=['red', 'blue'],
                                              shape=['square', 'circle']))
    metric.process({}, [
        dict(pred_caption='the red square.', captions=['the red square', 'red square left']),
        dict(pred_caption='a Blue square', captions=['the blue circle']),  # colour only
        dict(pred_caption='the square', captions=['the green square']),   # no colour group
        dict(pred_caption='', captions=['the red circle']),               # says nothing
    ])
    result = metric.compute_metrics(metric.results)
    assert result['colour'] == pytest.approx(100 * 2 / 3)
    assert result['shape'] == pytest.approx(100 * 2 / 4)
    assert result['all'] == pytest.approx(100 * 1 / 3)  # samples scored in every group
