"""The data sample every openseg model reads and writes: mmdet's ``DetDataSample`` plus the
fields the language-aware systems use, declared once with their types and shapes."""
from typing import List

from mmdet.structures import DetDataSample
from torch import Tensor


def _typed_field(name: str, dtype, doc: str) -> property:
    """A data field stored as ``_<name>`` and type-checked on assignment, the way mmdet
    declares ``gt_instances`` / ``pred_instances``."""
    private = '_' + name

    def getter(self):
        return getattr(self, private)

    def setter(self, value):
        if not isinstance(value, dtype):
            names = ' or '.join(t.__name__ for t in (dtype if isinstance(dtype, tuple)
                                                     else (dtype,)))
            raise TypeError(f'{type(self).__name__}.{name} must be {names}, '
                            f'not {type(value).__name__}')
        self.set_field(value, private, dtype=dtype)

    def deleter(self):
        delattr(self, private)

    return property(getter, setter, deleter, doc=doc)


class OpenSegDataSample(DetDataSample):
    """``DetDataSample`` with the inputs and predictions of openseg's language tasks.

    Inputs (set by the data pipeline, :class:`~openseg_core.datasets.PackOpenSegInputs`):

    - ``text`` (str): the referring phrase or question of this sample.
    - ``captions`` (list of str): reference captions of the image.
    - ``task`` (str): what the sample trains or tests (``'generic'``, ``'referring'``,
      ``'captioning'``...); multi-task models route samples by it.

    Predictions (set by models, read by metrics and visualisers):

    - ``pred_caption`` (str): generated caption.
    - ``pred_image_embed`` (Tensor ``(D,)``): unit image embedding for retrieval.
    - ``pred_text_embeds`` (Tensor ``(N, D)``): unit embeddings of this image's ``captions``.
    - ``pred_points`` (Tensor ``(T, P, 2)``): per generated token, ``P`` points ``(x, y)`` in
      pixels of the original image (a trace: the region each word talks about).

    Boxes, masks, scores and labels of detected objects stay in mmdet's ``pred_instances``
    (``bboxes (N, 4)`` xyxy pixels, ``masks (N, H, W)``, ``scores (N,)``, ``labels (N,)``);
    panoptic and semantic maps in ``pred_panoptic_seg`` / ``pred_sem_seg``.
    """

    text = _typed_field('text', str, 'Referring phrase or question (str).')
    captions = _typed_field('captions', (list, tuple), 'Reference captions (list of str).')
    task = _typed_field('task', str, 'The task this sample trains or tests (str).')
    pred_caption = _typed_field('pred_caption', str, 'Generated caption (str).')
    pred_image_embed = _typed_field('pred_image_embed', Tensor,
                                    'Unit image embedding (D,) for retrieval.')
    pred_text_embeds = _typed_field('pred_text_embeds', Tensor,
                                    'Unit embeddings (N, D) of the reference captions.')
    pred_points = _typed_field('pred_points', Tensor,
                               'Per generated token, P points (T, P, 2) in pixels.')


#: The fields above, in the order they are documented.
SAMPLE_FIELDS: List[str] = ['text', 'captions', 'task', 'pred_caption', 'pred_image_embed',
                            'pred_text_embeds', 'pred_points']
