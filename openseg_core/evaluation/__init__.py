"""Metrics. PQ, mIoU and mask AP are mmdet's (``CocoPanopticMetric``, ``SemSegMetric``,
``CocoMetric``), usable by name; openseg adds what they lack: PQ over an open vocabulary
(``OpenVocabPanopticMetric``), referring segmentation (``ReferringSegMetric``), captioning
BLEU-4 / CIDEr (``CaptionMetric``), image-text retrieval recall (``RetrievalMetric``) and
zero-shot classification of crops (``ZeroShotCropMetric``)."""
from .metrics import *  # noqa: F401,F403
