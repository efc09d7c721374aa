"""Dense-captioning mAP as Visual Genome's evaluation computes it (Johnson et al., DenseCap).

A prediction is a box, a caption and a score. Per image, predictions are taken by decreasing
score and each one is matched to the ground-truth box of highest IoU if that box is still
free (DenseCap's rule, unlike COCO's, does not fall back to the best *free* box). A match is
a true positive at an (IoU, caption-similarity) threshold pair when its IoU is at least the
IoU threshold and the similarity of its caption to that box's references (METEOR) exceeds
the similarity threshold. AP is the 100-point interpolated area under the precision-recall
curve of all predictions of the set ranked by score; mAP averages it over IoU thresholds
0.3-0.7 and METEOR thresholds 0-0.25. ``mAP_detection`` ignores the captions.
"""
import re
from collections import OrderedDict
from typing import Dict, List, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric

from openseg_core.registry import METRICS

from .caption_metric import tokenize_caption
from .referring_localization_metric import _boxes, box_iou

IOU_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
METEOR_THRESHOLDS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25)


def exact_meteor(candidate: str, references: Sequence[str], alpha: float = 0.9,
                 beta: float = 3.0, gamma: float = 0.5) -> float:
    """METEOR with its exact-match stage only (Banerjee and Lavie, 2005), best reference.

    ``F = P R / (alpha P + (1 - alpha) R)`` over matched unigrams, times ``1 - gamma (chunks /
    matches) ** beta``; unigrams are aligned greedily left to right. METEOR 1.5 (the jar the
    DenseCap evaluation runs) also matches stems, synonyms and paraphrases and weights
    function words, so its scores are higher on paraphrased captions; this one runs without
    Java and agrees with it on captions that reuse the references' words.
    """
    cand = tokenize_caption(candidate).split()
    best = 0.0
    for reference in references:
        ref = tokenize_caption(reference).split()
        if not cand or not ref:
            continue
        used = [False] * len(ref)
        aligned = []  # (candidate index, reference index)
        for i, word in enumerate(cand):
            for j, other in enumerate(ref):
                if not used[j] and other == word:
                    used[j] = True
                    aligned.append((i, j))
                    break
        matches = len(aligned)
        if not matches:
            continue
        chunks = 1 + sum(1 for (i0, j0), (i1, j1) in zip(aligned, aligned[1:])
                         if i1 != i0 + 1 or j1 != j0 + 1)
        precision, recall = matches / len(cand), matches / len(ref)
        fmean = precision * recall / (alpha * precision + (1 - alpha) * recall)
        best = max(best, fmean * (1 - gamma * (chunks / matches) ** beta))
    return best


def merge_overlapping_boxes(boxes: torch.Tensor, captions: List[List[str]],
                            iou_thr: float = 0.7):
    """DenseCap's merging of Visual Genome's overlapping ground truth: repeatedly take the
    box overlapping (IoU >= ``iou_thr``) the most others, replace the cluster by its mean box
    holding all their captions. Returns ``(M, 4)`` boxes and ``M`` caption lists."""
    if len(boxes) == 0:
        return boxes, []
    ious = box_iou(boxes, boxes).numpy()
    merged_boxes, merged_caps = [], []
    while True:
        can_merge = ious >= iou_thr
        counts = can_merge.sum(1)
        ind = int(np.argmax(counts))
        if counts[ind] == 0:
            break
        members = np.nonzero(can_merge[ind])[0]
        merged_boxes.append(boxes[members].mean(0))
        merged_caps.append([c for m in members for c in captions[m]])
        ious[members, :] = 0
        ious[:, members] = 0
    return torch.stack(merged_boxes), merged_caps


def _interpolated_ap(tp: np.ndarray, fp: np.ndarray, num_pos: int) -> float:
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall = tp / max(num_pos, 1)
    precision = tp / np.maximum(tp + fp, 1e-12)
    if not len(precision):
        return 0.0
    return float(np.mean([(precision * (recall >= t / 100)).max() for t in range(100)]))


@METRICS.register_module()
class DenseCaptionMetric(BaseMetric):
    """Visual Genome dense-captioning mAP (see the module docstring), in percent.

    Each data sample needs ``pred_instances`` with ``bboxes (N, 4)``, ``scores (N,)`` and
    ``captions`` (N str), and the ground truth in its metainfo: ``gt_bboxes (M, 4)`` and
    ``gt_captions`` (M lists of reference captions, or M str), all ``x1, y1, x2, y2`` in
    original image pixels.

    Args:
        similarity: ``'meteor'``, METEOR 1.5 as the official evaluation runs it
            (pycocoevalcap's jar; needs Java), or ``'exact_meteor'``
            (:func:`exact_meteor`, pure Python).
        merge_gt_boxes: merge overlapping ground-truth boxes first, as DenseCap does for
            Visual Genome.
    """

    default_prefix = 'densecap'

    def __init__(self, similarity: str = 'meteor', merge_gt_boxes: bool = True,
                 iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
                 meteor_thresholds: Sequence[float] = METEOR_THRESHOLDS, **kwargs):
        super().__init__(**kwargs)
        if similarity not in ('meteor', 'exact_meteor'):
            raise ValueError(f"DenseCaptionMetric: similarity must be 'meteor' or "
                             f"'exact_meteor', got {similarity!r}")
        self.similarity = similarity
        self.merge_gt_boxes = merge_gt_boxes
        self.iou_thresholds = tuple(iou_thresholds)
        self.meteor_thresholds = tuple(meteor_thresholds)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if 'gt_bboxes' not in sample or 'gt_captions' not in sample:
                raise ValueError("DenseCaptionMetric: a sample lacks 'gt_bboxes' or "
                                 "'gt_captions'; keep both in PackOpenSegInputs' meta_keys")
            gt_boxes = _boxes(sample['gt_bboxes'])
            gt_caps = [[c] if isinstance(c, str) else list(c) for c in sample['gt_captions']]
            if self.merge_gt_boxes:
                gt_boxes, gt_caps = merge_overlapping_boxes(gt_boxes, gt_caps)
            pred = sample['pred_instances']
            boxes = _boxes(pred['bboxes'])
            scores = torch.as_tensor(pred['scores'], dtype=torch.float64).reshape(-1).cpu()
            captions = list(pred['captions'])
            if not len(boxes) == len(scores) == len(captions):
                raise ValueError('DenseCaptionMetric: pred_instances must hold as many '
                                 f'bboxes, scores and captions, got {len(boxes)}, '
                                 f'{len(scores)} and {len(captions)}')
            order = torch.argsort(-scores, stable=True).tolist()
            ious = box_iou(boxes, gt_boxes) if len(gt_boxes) else torch.zeros(len(boxes), 0)
            used = [False] * len(gt_boxes)
            records = []
            for i in order:
                if ious.shape[1]:
                    best = int(ious[i].argmax())
                    iou = float(ious[i, best])
                    refs = gt_caps[best]
                else:
                    best, iou, refs = -1, -1.0, []
                matched = iou > 0 and not used[best]
                if matched:
                    used[best] = True
                records.append((float(scores[i]), matched, iou, captions[i], refs))
            self.results.append((records, len(gt_boxes)))

    def _similarities(self, records: list) -> np.ndarray:
        if self.similarity == 'exact_meteor':
            return np.array([exact_meteor(r[3], r[4]) if r[4] else 0.0 for r in records])
        import shutil
        if shutil.which('java') is None:
            raise RuntimeError("DenseCaptionMetric: similarity='meteor' runs METEOR 1.5 in "
                               "Java, which is not installed; install a JRE or use "
                               "similarity='exact_meteor'")
        from pycocoevalcap.meteor.meteor import Meteor
        scored = [i for i, r in enumerate(records) if r[4]]
        out = np.zeros(len(records))
        if scored:
            # METEOR's jar reads one line per pair: newlines in a caption would desync it.
            clean = [re.sub(r'\s+', ' ', tokenize_caption(t)) or 'empty' for t in
                     (records[i][3] for i in scored)]
            refs = {k: [re.sub(r'\s+', ' ', tokenize_caption(t)) or 'empty'
                        for t in records[i][4]] for k, i in enumerate(scored)}
            meteor = Meteor()
            try:
                _, scores = meteor.compute_score(refs, {k: [c] for k, c in enumerate(clean)})
            finally:
                getattr(meteor, 'close', lambda: None)()
            out[scored] = scores
        return out

    def compute_metrics(self, results: list) -> dict:
        if not results:
            raise ValueError('DenseCaptionMetric: no samples were evaluated')
        records = sorted((r for image, _ in results for r in image), key=lambda r: -r[0])
        num_pos = sum(n for _, n in results)
        similarity = self._similarities(records)
        matched = np.array([r[1] for r in records], dtype=bool)
        ious = np.array([r[2] for r in records])
        metrics: Dict[str, float] = OrderedDict()
        per_pair = []
        detection = []
        for iou_thr in self.iou_thresholds:
            hit = matched & (ious >= iou_thr)
            detection.append(_interpolated_ap(hit.astype(float), (~hit).astype(float),
                                              num_pos))
            for sim_thr in self.meteor_thresholds:
                tp = hit & (similarity > sim_thr)
                per_pair.append(_interpolated_ap(tp.astype(float), (~tp).astype(float),
                                                 num_pos))
        metrics['mAP'] = 100 * float(np.mean(per_pair))
        metrics['mAP_detection'] = 100 * float(np.mean(detection))
        for iou_thr, ap in zip(self.iou_thresholds, detection):
            metrics[f'AP_detection@{iou_thr}'] = 100 * ap
        return metrics
