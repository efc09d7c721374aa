"""Small synthetic batches in the shapes openseg's models and parts receive (for contract
checks and tests; no files needed)."""
from typing import List, Sequence, Tuple

import numpy as np
import torch
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData, PixelData
from torch import Tensor

from openseg_core.structures import OpenSegDataSample

#: Tasks :func:`synthetic_batch` knows.
TASKS = ('panoptic', 'referring', 'captioning')


def _square_masks(size: int, count: int) -> np.ndarray:
    masks = np.zeros((count, size, size), np.uint8)
    for k in range(count):
        start = (k * size) // (count + 1)
        masks[k, start:start + size // 3, start:start + size // 3] = 1
    return masks


def synthetic_batch(task: str, batch: int = 2, size: int = 64,
                    seed: int = 0) -> Tuple[Tensor, List[OpenSegDataSample]]:
    """A preprocessed batch: ``inputs (B, 3, size, size)`` (normalised) and samples with the
    targets of ``task`` over the vocabulary ``('circle', 'square') + ('sky',)``.

    ``panoptic``: two things (labels 0, 1) and stuff label 2 elsewhere; ``referring``: a
    ``text`` and its one mask; ``captioning``: two ``captions``.
    """
    if task not in TASKS:
        raise ValueError(f'unknown task {task!r}; choose one of {TASKS}')
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn(batch, 3, size, size, generator=gen)
    samples = []
    for _ in range(batch):
        sample = OpenSegDataSample(metainfo=dict(
            img_shape=(size, size), ori_shape=(size, size), batch_input_shape=(size, size),
            pad_shape=(size, size), scale_factor=(1.0, 1.0)))
        count = 1 if task == 'referring' else 2
        masks = _square_masks(size, count)
        boxes = torch.tensor([[0., 0., size / 3, size / 3]]).repeat(count, 1)
        sample.gt_instances = InstanceData(labels=torch.arange(count) % 2,
                                           masks=BitmapMasks(masks, size, size), bboxes=boxes)
        sample.task = {'panoptic': 'generic'}.get(task, task)
        if task == 'panoptic':
            sem = torch.full((1, size, size), 2, dtype=torch.long)
            sem[0][torch.from_numpy(masks.any(0))] = 255
            sample.gt_sem_seg = PixelData(sem_seg=sem)
        elif task == 'referring':
            sample.text = 'the square on the left'
        else:
            sample.captions = ['a red square above a blue circle', 'two shapes in the sky']
        samples.append(sample)
    return inputs, samples


def raw_samples(sizes: Sequence[Tuple[int, int]] = ((40, 50), (64, 30))) -> dict:
    """A data-preprocessor input: uint8 images of ``sizes`` and samples, the first with
    instance masks and the second without (a caption sample)."""
    inputs, samples = [], []
    for i, (height, width) in enumerate(sizes):
        inputs.append(torch.randint(0, 256, (3, height, width), dtype=torch.uint8))
        sample = OpenSegDataSample(metainfo=dict(img_shape=(height, width),
                                                 ori_shape=(height, width)))
        if i == 0:
            masks = np.zeros((1, height, width), np.uint8)
            masks[0, :height // 2] = 1
            sample.gt_instances = InstanceData(labels=torch.tensor([0]),
                                               masks=BitmapMasks(masks, height, width),
                                               bboxes=torch.tensor([[0., 0., width, height / 2]]))
        else:
            sample.captions = ['a caption']
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)
