"""Metrics. PQ, mIoU and mask AP are mmdet's (``CocoPanopticMetric``, ``SemSegMetric``,
``CocoMetric``), usable by name; openseg adds what they lack: PQ over an open vocabulary
(``OpenVocabPanopticMetric``), referring segmentation (``ReferringSegMetric``), captioning
BLEU-4 / CIDEr (``CaptionMetric``) and the words captions name (``CaptionKeywordMetric``),
image-text retrieval recall (``RetrievalMetric``), zero-shot classification of crops
(``ZeroShotCropMetric``), referring localization accuracy (``ReferringLocalizationMetric``),
Visual Genome dense-captioning mAP (``DenseCaptionMetric``) and the quality of word traces
(``TraceQualityMetric``)."""
from .metrics import *  # noqa: F401,F403
