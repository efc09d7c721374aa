"""APE's losses: focal class, L1 + GIoU boxes on every decoder layer and the encoder
proposals, focal + dice masks on the last layer, with per-task loss masks and a federated
class loss."""
from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmdet.utils import reduce_mean
from mmengine.fileio import load
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor

from openseg_core.models.interfaces import implements
from openseg_core.registry import TASK_UTILS

from ..registry import MODELS

#: The switches of ``task_loss_weights``: decoder class / box / GIoU / mask / dice losses and
#: the encoder proposals' class / box / GIoU losses.
LOSS_TERMS = ('cls', 'bbox', 'iou', 'mask', 'dice', 'enc_cls', 'enc_bbox', 'enc_iou')


@dataclass
class _Target:
    """One image's targets: prompt columns, boxes (xyxy normalised by the image size) and
    masks (padded to the batch) when it has them."""
    labels: Tensor
    norm_bboxes: Tensor
    masks: Optional[Tensor] = None

    def __len__(self) -> int:
        return len(self.labels)


@implements(covered_by='ape.APE')
@MODELS.register_module()
class APECriterion(BaseModule):
    """APE's training objective (the official ``DeformableCriterion`` with DETA assignment).

    Per image, targets are assigned once for the decoder (DETA: by IoU with the decoder's
    initial reference boxes, one-to-many; the assignment serves every layer) and once for
    the encoder proposals (DETA, class-agnostic, against the fixed anchors). With
    ``assigner=None`` a one-to-one ``matcher`` (the core's ``HungarianMatcher``; APE's
    costs class 2, L1 5, GIoU 2) matches every layer and the proposals separately.

    Losses, each normalised by the number of targets in the batch: sigmoid focal class loss
    over the prompts each image is scored against (``loss_cls``), L1 on normalised
    ``cx, cy, w, h`` (``loss_bbox``) and GIoU (``loss_iou``) on every layer (``d{i}.``) and
    the proposals (``enc.``; binary class loss there); mask sigmoid focal (mean over pixels)
    and dice on the last layer, predictions upsampled to the padded input, at most
    ``max_masks_per_image`` masks per image on average.

    Args:
        assigner, enc_assigner: ``OneToManyAssigner`` configs (``None``: ``matcher``).
        matcher: one-to-one matcher config.
        loss_cls, loss_bbox, loss_iou, loss_mask, loss_dice: mmdet loss configs (APE's
            weights 1, 5, 2, 5, 5).
        task_loss_weights: ``{task: {term: weight}}`` over :data:`LOSS_TERMS`, the
            per-dataset loss masks (e.g. grounding sets without reliable boxes train only
            ``cls``; RefCOCO-style sets skip ``enc_cls``).
        federated: ``dict(num_classes=50, power=0.5, ann_file=None)``: for ``generic``
            samples the class loss covers only the batch's classes and ``num_classes``
            sampled others, drawn with probability ``image count ** power`` (counts from a
            COCO ``ann_file``, matched by name; uniform without one; classes it lacks are
            always in), as for LVIS / OpenImages.
    """

    def __init__(self, assigner: Optional[dict] = dict(type='OneToManyAssigner',
                                                       pos_iou_thr=0.6, pos_fraction=0.25,
                                                       max_k=4),
                 enc_assigner: Optional[dict] = dict(type='OneToManyAssigner',
                                                     pos_iou_thr=0.7, num_samples=256,
                                                     pos_fraction=0.5, max_k=4),
                 matcher: Optional[dict] = None,
                 loss_cls: dict = dict(type='mmdet.FocalLoss', use_sigmoid=True, gamma=2.0,
                                       alpha=0.25, loss_weight=1.0),
                 loss_bbox: dict = dict(type='mmdet.L1Loss', loss_weight=5.0),
                 loss_iou: dict = dict(type='mmdet.GIoULoss', loss_weight=2.0),
                 loss_mask: dict = dict(type='mmdet.FocalLoss', use_sigmoid=True, gamma=2.0,
                                        alpha=0.25, loss_weight=5.0),
                 loss_dice: dict = dict(type='mmdet.DiceLoss', use_sigmoid=True,
                                        activate=True, naive_dice=True, eps=1.0,
                                        loss_weight=5.0),
                 max_masks_per_image: int = 128,
                 task_loss_weights: Optional[Dict[str, Dict[str, float]]] = None,
                 federated: Optional[dict] = None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if assigner is None and matcher is None:
            raise ValueError('APECriterion needs an assigner (DETA) or a matcher (Hungarian)')
        self.assigner = TASK_UTILS.build(assigner) if assigner is not None else None
        self.enc_assigner = (TASK_UTILS.build(enc_assigner) if enc_assigner is not None
                             else None)
        self.matcher = TASK_UTILS.build(matcher) if matcher is not None else None
        if self.enc_assigner is None and self.matcher is None:
            raise ValueError('APECriterion needs an enc_assigner or a matcher for the '
                             'encoder proposals')
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_bbox = MODELS.build(loss_bbox)
        self.loss_iou = MODELS.build(loss_iou)
        self.loss_mask = MODELS.build(loss_mask)
        self.loss_dice = MODELS.build(loss_dice)
        self.max_masks_per_image = max_masks_per_image
        for task, weights in (task_loss_weights or {}).items():
            unknown = set(weights) - set(LOSS_TERMS)
            if unknown:
                raise ValueError(f'task_loss_weights[{task!r}] names unknown terms '
                                 f'{sorted(unknown)}; choose among {LOSS_TERMS}')
        self.task_loss_weights = dict(task_loss_weights or {})
        self.federated = dict(federated) if federated else None
        self._federated_weights: Dict[tuple, Tensor] = {}

    # ---------------------------------------------------------------- helpers
    def _weight(self, tasks: Sequence[str], term: str, device) -> Tensor:
        """``(B,)`` the weight of ``term`` for each sample's task."""
        return torch.tensor([float(self.task_loss_weights.get(t, {}).get(term, 1.0))
                             for t in tasks], device=device)

    def _federated_columns(self, vocabulary: Sequence[str], labels: List[Tensor],
                           tasks: Sequence[str], device) -> Optional[Tensor]:
        """``(Kv,)`` bool: the vocabulary columns the class loss of generic samples covers."""
        if not self.federated or not vocabulary:
            return None
        key = tuple(vocabulary)
        if key not in self._federated_weights:
            counts, always = None, torch.zeros(len(vocabulary), dtype=torch.bool)
            if self.federated.get('ann_file'):
                coco = load(self.federated['ann_file'])
                names = {c['id']: c['name'] for c in coco['categories']}
                per_class = Counter()
                for image_cats in {(a['image_id'], a['category_id'])
                                   for a in coco['annotations']}:
                    per_class[names[image_cats[1]]] += 1
                known = {names[i] for i in names}
                counts = torch.tensor([float(per_class.get(n, 0)) for n in vocabulary])
                always = torch.tensor([n not in known for n in vocabulary])
            weights = (torch.ones(len(vocabulary)) if counts is None
                       else counts ** self.federated.get('power', 0.5))
            self._federated_weights[key] = torch.stack([weights, always.float()])
        weights, always = self._federated_weights[key].to(device)
        present = torch.cat([lab for lab, t in zip(labels, tasks) if t == 'generic']
                            + [torch.zeros(0, dtype=torch.long, device=device)]).unique()
        columns = always.bool().clone()
        columns[present] = True
        wanted = self.federated.get('num_classes', 50) - len(present)
        probs = weights.clone()
        probs[columns] = 0
        available = int((probs > 0).sum())
        if wanted > 0 and available:
            columns[torch.multinomial(probs, min(wanted, available), replacement=False)] = True
        return columns

    @staticmethod
    def _zero(*tensors: Tensor) -> Tensor:
        """A zero that keeps the graph (so every loss back-propagates)."""
        return sum(t.sum() for t in tensors) * 0.0

    # ---------------------------------------------------------------- assignment
    def _assign_decoder(self, out, targets: List[InstanceData], metas, layer: int):
        if self.assigner is not None:
            return [self.assigner.match(
                InstanceData(bboxes=bbox_cxcywh_to_xyxy(out.init_reference[i].detach())),
                InstanceData(bboxes=t.norm_bboxes, labels=t.labels))
                for i, t in enumerate(targets)]
        return [self.matcher.match(
            InstanceData(scores=out.cls_logits[layer][i].detach(),
                         bboxes=self._pixels(bbox_cxcywh_to_xyxy(out.boxes[layer][i]), meta)),
            InstanceData(labels=t.labels, bboxes=self._pixels(t.norm_bboxes, meta)), meta)
            for i, (t, meta) in enumerate(zip(targets, metas))]

    def _assign_encoder(self, out, targets: List[InstanceData], metas):
        if self.enc_assigner is not None:
            return [self.enc_assigner.match(
                InstanceData(bboxes=bbox_cxcywh_to_xyxy(out.anchors[i])),
                InstanceData(bboxes=t.norm_bboxes, labels=torch.zeros_like(t.labels)))
                for i, t in enumerate(targets)]
        return [self.matcher.match(
            InstanceData(scores=out.enc_cls_logits[i].detach(),
                         bboxes=self._pixels(bbox_cxcywh_to_xyxy(out.enc_boxes[i]), meta)),
            InstanceData(labels=torch.zeros_like(t.labels),
                         bboxes=self._pixels(t.norm_bboxes, meta)), meta)
            for i, (t, meta) in enumerate(zip(targets, metas))]

    @staticmethod
    def _pixels(norm_xyxy: Tensor, meta: dict) -> Tensor:
        height, width = meta['img_shape'][:2]
        return norm_xyxy * norm_xyxy.new_tensor([width, height, width, height])

    # ---------------------------------------------------------------- losses
    def _class_loss(self, logits: Tensor, targets, assignment, columns: Tensor,
                    weight: Tensor, num_boxes: float) -> Tensor:
        """Sigmoid focal loss over the ``columns (B, K)`` of each image."""
        batch, queries, num_prompts = logits.shape
        labels = logits.new_full((batch, queries), num_prompts, dtype=torch.long)
        for i, ((q, g), t) in enumerate(zip(assignment, targets)):
            labels[i, q] = t.labels[g]
        element_weight = (columns.float() * weight[:, None])[:, None].expand(
            batch, queries, num_prompts)
        return self.loss_cls(logits.flatten(0, 1), labels.flatten(),
                             weight=element_weight.flatten(0, 1), avg_factor=num_boxes)

    def _box_losses(self, boxes: Tensor, targets, assignment, bbox_weight: Tensor,
                    iou_weight: Tensor, num_boxes: float):
        preds = torch.cat([boxes[i, q] for i, (q, _) in enumerate(assignment)])
        if len(preds) == 0:
            return self._zero(boxes), self._zero(boxes)
        gts = torch.cat([t.norm_bboxes[g] for t, (_, g) in zip(targets, assignment)])
        counts = [len(q) for q, _ in assignment]
        w_bbox = torch.repeat_interleave(bbox_weight, torch.tensor(counts, device=preds.device))
        w_iou = torch.repeat_interleave(iou_weight, torch.tensor(counts, device=preds.device))
        gt_cxcywh = torch.cat([(gts[:, :2] + gts[:, 2:]) / 2, gts[:, 2:] - gts[:, :2]], -1)
        loss_bbox = self.loss_bbox(preds, gt_cxcywh, weight=w_bbox[:, None],
                                   avg_factor=num_boxes)
        loss_iou = self.loss_iou(bbox_cxcywh_to_xyxy(preds), gts, weight=w_iou,
                                 avg_factor=num_boxes)
        return loss_bbox, loss_iou

    def _mask_losses(self, mask_logits: Tensor, targets, assignment, mask_weight: Tensor,
                     dice_weight: Tensor, num_boxes: float):
        pairs = [(i, q, g) for i, ((qs, gs), t) in enumerate(zip(assignment, targets))
                 if t.masks is not None for q, g in zip(qs.tolist(), gs.tolist())]
        limit = self.max_masks_per_image * len(targets)
        if len(pairs) > limit:
            chosen = torch.randperm(len(pairs))[:limit].sort()[0].tolist()
            pairs = [pairs[k] for k in chosen]
        if not pairs:
            return self._zero(mask_logits), self._zero(mask_logits)
        images = torch.tensor([p[0] for p in pairs], device=mask_logits.device)
        preds = mask_logits[images, torch.tensor([p[1] for p in pairs],
                                                 device=mask_logits.device)]
        gts = torch.stack([targets[i].masks[g] for i, _, g in pairs]).float()
        preds = F.interpolate(preds[:, None], size=gts.shape[-2:], mode='bilinear',
                              align_corners=False)[:, 0].flatten(1)
        gts = gts.flatten(1)
        pixels = preds.shape[1]
        # Mean over each mask's pixels, summed over masks, divided by the targets.
        loss_mask = self.loss_mask(preds, gts, weight=mask_weight[images][:, None].expand_as(
            preds), avg_factor=num_boxes * pixels)
        loss_dice = self.loss_dice(preds, gts, weight=dice_weight[images],
                                   avg_factor=num_boxes)
        return loss_mask, loss_dice

    def forward(self, out, data_samples, labels: List[Tensor], columns: Tensor,
                tasks: Sequence[str], metas: List[dict],
                vocabulary: Sequence[str] = ()) -> Dict[str, Tensor]:
        """Losses of one batch.

        Args:
            out: the model's :class:`~.ape.APEOutput`.
            data_samples: with ``gt_instances`` (``bboxes`` xyxy pixels of the input,
                ``masks`` padded to the batch, optional).
            labels: per sample, its targets' prompt columns.
            columns: ``(B, K)`` the prompts each image is scored against.
            tasks: each sample's task (keys of ``task_loss_weights``).
        """
        device = out.boxes[-1].device
        targets = []
        for sample, label, meta in zip(data_samples, labels, metas):
            gt = sample.gt_instances
            boxes = gt.bboxes.tensor if hasattr(gt.bboxes, 'tensor') else gt.bboxes
            height, width = meta['img_shape'][:2]
            masks = None
            if 'masks' in gt:
                masks = (gt.masks.to_tensor(torch.bool, device) if hasattr(gt.masks, 'to_tensor')
                         else gt.masks.to(device=device, dtype=torch.bool))
            targets.append(_Target(label.to(device), boxes.to(device).float()
                                   / boxes.new_tensor([width, height, width, height]).to(device),
                                   masks))
        num_boxes = max(reduce_mean(torch.tensor(float(sum(len(t) for t in targets)),
                                                 device=device)).item(), 1.0)
        columns = columns.clone()
        federated = self._federated_columns(vocabulary, labels, tasks, device)
        if federated is not None:
            generic = torch.tensor([t == 'generic' for t in tasks], device=device)
            columns[generic, :len(vocabulary)] &= federated
        w = {term: self._weight(tasks, term, device) for term in LOSS_TERMS}

        losses = {}
        num_layers = len(out.cls_logits)
        assignment = None
        for layer in range(num_layers):
            if assignment is None or self.assigner is None:
                assignment = self._assign_decoder(out, targets, metas, layer)
            prefix = '' if layer == num_layers - 1 else f'd{layer}.'
            losses[prefix + 'loss_cls'] = self._class_loss(
                out.cls_logits[layer], targets, assignment, columns, w['cls'], num_boxes)
            losses[prefix + 'loss_bbox'], losses[prefix + 'loss_iou'] = self._box_losses(
                out.boxes[layer], targets, assignment, w['bbox'], w['iou'], num_boxes)
        losses['loss_mask'], losses['loss_dice'] = self._mask_losses(
            out.mask_logits, targets, assignment, w['mask'], w['dice'], num_boxes)

        enc_assignment = self._assign_encoder(out, targets, metas)
        binary = [_Target(torch.zeros_like(t.labels), t.norm_bboxes) for t in targets]
        losses['enc.loss_cls'] = self._class_loss(
            out.enc_cls_logits, binary, enc_assignment,
            torch.ones(len(targets), 1, dtype=torch.bool, device=device), w['enc_cls'],
            num_boxes)
        losses['enc.loss_bbox'], losses['enc.loss_iou'] = self._box_losses(
            out.enc_boxes, binary, enc_assignment, w['enc_bbox'], w['enc_iou'], num_boxes)
        return losses
