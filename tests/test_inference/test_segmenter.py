"""Inference resizes as the config's test pipeline does and answers at the image's size."""
import numpy as np
import pytest
from mmengine.config import Config

from openseg_core.engine.cli import load_config
from openseg_core.inference import Segmenter, check_image, inference_pipeline
from openseg_core.inference.segmenter import preprocess_images
from openseg_core.testing import TINY_CONFIG

pytestmark = pytest.mark.usefixtures('single_thread')


@pytest.fixture(scope='module')
def segmenter():
    return Segmenter(TINY_CONFIG)  # random weights: shapes and plumbing only


def test_the_pipeline_keeps_the_configs_resizing_only():
    steps = inference_pipeline(load_config(TINY_CONFIG))
    assert [s['type'] for s in steps] == ['mmdet.LoadImageFromNDArray', 'Resize',
                                          'PackOpenSegInputs']
    assert steps[1]['scale'] == (128, 128) and steps[1]['keep_ratio']
    # Without a test pipeline, images go in at their own size.
    assert [s['type'] for s in inference_pipeline(Config())] == [
        'mmdet.LoadImageFromNDArray', 'PackOpenSegInputs']


def test_a_photo_runs_at_the_test_scale(segmenter):
    image = np.random.default_rng(0).integers(0, 255, (1500, 2000, 3), dtype=np.uint8)
    batch = preprocess_images(segmenter.model, [image], segmenter.pipeline)
    sample = batch['data_samples'][0]
    assert sample.ori_shape == (1500, 2000) and sample.img_shape == (96, 128)
    assert batch['inputs'].shape[-2:] == (96, 128)


@pytest.mark.parametrize('shape', [(90, 70), (1500, 2000)])
def test_results_come_back_at_the_images_size(segmenter, shape):
    image = np.random.default_rng(1).integers(0, 255, shape + (3,), dtype=np.uint8)
    result = segmenter(image, ['circle', 'square'], ['sky'], score_thr=0.0)
    assert result['panoptic'].shape == result['semantic'].shape == shape
    assert all(i['mask'].shape == shape for i in result['instances'])
    areas = np.bincount(result['panoptic'].ravel(), minlength=len(result['segments']) + 1)
    assert [s['area'] for s in result['segments']] == areas[1:].tolist()


def test_the_size_limit_is_checked_from_the_header(tmp_path):
    from PIL import Image
    Image.new('RGB', (300, 200)).save(tmp_path / 'wide.png')
    check_image(tmp_path / 'wide.png', max_pixels=60000)
    with pytest.raises(ValueError, match=r'300x200 \(0.1 megapixels\), above the limit of 0.1'):
        check_image(tmp_path / 'wide.png', max_pixels=59999)
