"""Bad images given to tools/demo.py and the Python API: one line, nothing written."""
import numpy as np
import pytest
from PIL import Image

from openseg_core.inference import Segmenter, read_image
from openseg_core.testing import (TINY_CONFIG, assert_one_line_error, run_tool_in_process,
                                  snapshot)


def _demo(image, out, *extra, checkpoint=None):
    # Images are checked before a model loads, so most cases need no real checkpoint.
    return run_tool_in_process(['demo.py', image, TINY_CONFIG, checkpoint or image,
                                '--things', 'circle', '--out-dir', out, *extra])


@pytest.mark.parametrize('name, content, message', [
    ('notes.png', b'just some text', 'is not an image openseg can read'),
    ('empty.jpg', b'', 'is empty (0 bytes)'),
])
def test_not_an_image(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    result = _demo(path, tmp_path / 'out')
    assert_one_line_error(result, 'demo.py', str(path), message, 'give a PNG, JPEG')
    assert snapshot(tmp_path / 'out') is None


def test_missing_image(tmp_path):
    result = _demo(tmp_path / 'nope.jpg', tmp_path / 'out')
    assert_one_line_error(result, 'demo.py', 'image not found', 'nope.jpg')
    assert snapshot(tmp_path / 'out') is None


def test_directory_without_images(tmp_path):
    (tmp_path / 'pics').mkdir()
    (tmp_path / 'pics' / 'readme.txt').write_text('no images here')
    result = _demo(tmp_path / 'pics', tmp_path / 'out')
    assert_one_line_error(result, 'demo.py', 'no images', 'pics')
    assert snapshot(tmp_path / 'out') is None


def test_truncated_jpeg_fails_and_keeps_an_existing_out_dir(tmp_path, photo, tiny_checkpoint):
    data = photo.read_bytes()
    broken = tmp_path / 'pics' / 'b_broken.jpg'
    broken.parent.mkdir()
    (tmp_path / 'pics' / 'a_good.jpg').write_bytes(data)
    broken.write_bytes(data[:len(data) // 2])
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'earlier.txt').write_text('a result of another run')
    before = snapshot(out)
    # The good image is segmented and written first; the failure takes its files back out.
    result = _demo(tmp_path / 'pics', out, checkpoint=tiny_checkpoint)
    assert_one_line_error(result, 'demo.py', 'b_broken.jpg', 'truncated or corrupt')
    assert snapshot(out) == before


def test_image_above_the_pixel_limit(tmp_path, photo):
    result = _demo(photo, tmp_path / 'out', '--max-pixels', '1000')
    assert_one_line_error(result, 'demo.py', '64x48', 'above the limit', '--max-pixels')
    assert snapshot(tmp_path / 'out') is None


def test_python_api_names_the_file(tmp_path):
    path = tmp_path / 'scan.png'
    path.write_text('not pixels')
    segmenter = Segmenter(TINY_CONFIG)
    with pytest.raises(ValueError, match='scan.png is not an image openseg can read'):
        segmenter(str(path), ['circle'])


def test_awkward_images_read_upright_as_8_bit_rgb(tmp_path):
    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[:, :20] = (255, 0, 0)
    rotated = Image.fromarray(rgb)
    exif = rotated.getexif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees clockwise
    rotated.save(tmp_path / 'rotated.jpg', exif=exif, quality=95)
    assert read_image(tmp_path / 'rotated.jpg').shape == (40, 30, 3)
    # Red (left half) ends up on top after the rotation; BGR order.
    assert read_image(tmp_path / 'rotated.jpg')[5, 15, 2] > 200
    Image.fromarray((np.arange(1200, dtype=np.uint16).reshape(30, 40) * 50)).save(
        tmp_path / 'depth16.png')
    sixteen = read_image(tmp_path / 'depth16.png')
    assert sixteen.dtype == np.uint8 and sixteen.shape == (30, 40, 3)
    assert sixteen.max() > 200 and sixteen[0, 0, 0] == 0  # scaled, not clipped
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[..., 3] = 0  # fully transparent: white
    Image.fromarray(rgba, 'RGBA').save(tmp_path / 'alpha.png')
    assert (read_image(tmp_path / 'alpha.png') == 255).all()
    Image.fromarray(np.full((30, 40), 90, np.uint8)).save(tmp_path / 'gray.png')
    assert (read_image(tmp_path / 'gray.png') == 90).all()
