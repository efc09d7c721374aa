"""Inputs shared by the bad-input catalogue (``test_bad_*.py``)."""
import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(scope='session')
def photo(tmp_path_factory):
    """A small RGB JPEG standing in for a user's photo."""
    path = tmp_path_factory.mktemp('photos') / 'photo.jpg'
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path, quality=90)
    return path


@pytest.fixture(scope='session')
def tiny_checkpoint(full_run):
    """A checkpoint of the tiny config written by tools/train.py (read-only)."""
    return full_run[0] / 'iter_4.pth'


@pytest.fixture(scope='session')
def weights_only_checkpoint(tiny_checkpoint, tmp_path_factory):
    """The tiny checkpoint's weights without a training state (as converted or hub files)."""
    path = tmp_path_factory.mktemp('ckpt') / 'weights.pth'
    state = torch.load(tiny_checkpoint, map_location='cpu', weights_only=True)['state_dict']
    torch.save(dict(state_dict=state), path)
    return path
