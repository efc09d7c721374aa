"""Word boxes of Localized Narratives: the trace inside a word's span, or interpolated."""
import json

import pytest

from openseg_core.datasets import LocalizedNarrativesDataset


@pytest.fixture()
def narratives(tmp_path):
    record = dict(image_id='1', caption='a dog here', timed_caption=[
        dict(utterance='a', start_time=0.0, end_time=0.1),
        dict(utterance='dog', start_time=1.0, end_time=3.0),
        dict(utterance='here', start_time=5.0, end_time=6.0)],
        traces=[[dict(x=0.0, y=0.0, t=0.0), dict(x=0.2, y=0.4, t=2.0),
                 dict(x=0.4, y=0.4, t=4.0)]])
    path = tmp_path / 'ln.jsonl'
    path.write_text(json.dumps(record) + '\n')
    return str(path)


def test_boxes_of_the_points_inside_each_span(narratives):
    info = LocalizedNarrativesDataset(ann_file=narratives)[0]
    assert info['word_boxes'] == [(0.0, 0.0, 0.0, 0.0), (0.2, 0.4, 0.2, 0.4), None]
    assert info['word_points'][2] is None


def test_interpolated_boxes_cover_every_span(narratives):
    info = LocalizedNarrativesDataset(ann_file=narratives, word_boxes='interpolated')[0]
    # "dog" spans t = 1..3: x goes 0.1 -> 0.2 -> 0.3, y 0.2 -> 0.4 -> 0.4
    assert info['word_boxes'][1] == pytest.approx((0.1, 0.2, 0.3, 0.4))
    # "here" (t = 5..6) is past the trace: extrapolated along its last segment
    assert info['word_boxes'][2] == pytest.approx((0.5, 0.4, 0.6, 0.4))


def test_unknown_word_box_rule_is_refused(narratives):
    with pytest.raises(ValueError, match='word_boxes'):
        LocalizedNarrativesDataset(ann_file=narratives, word_boxes='mean')
