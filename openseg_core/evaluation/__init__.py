"""Metrics. Panoptic PQ, mIoU and mask AP are mmdet's (``CocoPanopticMetric``,
``SemSegMetric``, ``CocoMetric``), usable by name; openseg adds what they lack."""
from .metrics import *  # noqa: F401,F403
