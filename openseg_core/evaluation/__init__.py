"""Metrics. PQ, mIoU and mask AP are mmdet's (``CocoPanopticMetric``, ``SemSegMetric``,
``CocoMetric``), usable by name; openseg adds what they lack: PQ over an open vocabulary
(``OpenVocabPanopticMetric``) and referring segmentation (``ReferringSegMetric``)."""
from .metrics import *  # noqa: F401,F403
