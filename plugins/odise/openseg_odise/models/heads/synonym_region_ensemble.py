"""The core's CLIP region ensemble for class names that list synonyms ("dog, puppy")."""
from typing import Sequence, Tuple, Union

import torch
from torch import Tensor

from openseg_core.models import Vocabulary
from openseg_core.models.interfaces import implements
from openseg_core.models.mask_classification import CLIPRegionEnsemble

from ...registry import MODELS
from .synonyms import split_synonyms


def coco_panoptic_names() -> Tuple[str, ...]:
    """COCO panoptic's 133 class names (mmdet's list) without the ``-merged`` / ``-other`` /
    ``-stuff`` suffixes, so that other datasets' plain names match them."""
    from mmdet.datasets import CocoPanopticDataset
    names = []
    for name in CocoPanopticDataset.METAINFO['classes']:
        for suffix in ('-merged', '-other', '-stuff'):
            name = name.replace(suffix, '')
        names.append(name)
    return tuple(names)


#: Training vocabularies a config may name instead of listing them.
SEEN_PRESETS = dict(coco_panoptic=coco_panoptic_names)


@implements('mask_classification.RegionEnsemble',
            example=dict(seen_classes=('circle, ring',), region='mask_clip'))
@MODELS.register_module()
class SynonymRegionEnsemble(CLIPRegionEnsemble):
    """:class:`~openseg_core.models.mask_classification.CLIPRegionEnsemble` where a class
    counts as seen when any of its names is a name of a training class (ODISE's
    ``category_overlapping_mask``: ``a`` for seen classes, ``b`` for the others). The
    defaults are ODISE's label model: MaskCLIP regions, CLIP weighted 0.3 on seen classes
    and 0.7 on unseen ones (caption model 0.35 / 0.65).

    Args:
        seen_classes: the training classes' names, or a preset (``'coco_panoptic'``).
        separator: what separates the names of one class.
        (others as ``CLIPRegionEnsemble``)
    """

    def __init__(self, seen_classes: Union[str, Sequence[str]] = (), alpha_seen: float = 0.3,
                 alpha_unseen: float = 0.7, region: str = 'mask_clip', separator: str = ',',
                 **kwargs):
        if isinstance(seen_classes, str):
            if seen_classes not in SEEN_PRESETS:
                raise ValueError(f'seen_classes {seen_classes!r} is no preset '
                                 f'({sorted(SEEN_PRESETS)}); list the class names instead')
            seen_classes = SEEN_PRESETS[seen_classes]()
        super().__init__(seen_classes=seen_classes, alpha_seen=alpha_seen,
                         alpha_unseen=alpha_unseen, region=region, **kwargs)
        self.separator = separator
        self.seen_names = frozenset(split_synonyms(tuple(seen_classes), separator)[0])

    def alphas(self, vocabulary: Vocabulary, device=None) -> Tensor:
        seen = [not self.seen_names.isdisjoint(split_synonyms([name], self.separator)[0])
                for name in vocabulary.names]
        return torch.tensor([self.alpha_seen if s else self.alpha_unseen for s in seen],
                            device=device)
