"""X-Decoder: one decoder for generic and referring segmentation, retrieval and captioning."""
from collections import defaultdict
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.structures import SampleList
from mmengine.model import BaseModel
from mmengine.structures import InstanceData
from torch import Tensor

from openseg_core.models.segmentors import OpenVocabularyMixin

from ..converters.official import convert_official, is_official
from ..registry import MODELS
from .caption_search import beam_search, greedy_search

#: What a sample's ``task`` metainfo may say, and what it trains / predicts.
DATA_TASKS = ('generic', 'referring', 'captioning')


class Features(NamedTuple):
    """What the image side computes once per batch and every task decodes from."""
    mask_features: Tensor   #: ``(B, C, H/4, W/4)``
    memories: List[Tensor]  #: pixel-decoder maps, low to high resolution
    pooled: Tensor          #: ``(B, C_5)`` average of the last backbone map


@MODELS.register_module()
class XDecoder(OpenVocabularyMixin, BaseModel):
    """Backbone -> pixel decoder -> :class:`XDecoderQueryDecoder` -> :class:`XDecoderHead`,
    with one text encoder for class names, referring phrases, captions and retrieval texts.

    A batch may mix tasks (each sample's ``task`` metainfo, default ``default_task``): the
    image features are computed once and each task's samples are decoded with their own
    queries and attention mask, as in the paper's pre-training.

    * ``generic`` (panoptic/semantic/instance data): ``L_cls`` between the first ``m - 1``
      latent outputs and the ``C`` concept embeddings ("background" included), mask BCE + dice
      after Hungarian matching, every decoder layer (deep supervision).
    * ``referring`` (``text`` metainfo + one ``gt_instances`` mask): object queries attend the
      phrase's token features; the query matched to the referred mask (same matcher, phrase
      probability as class cost) is the target of a cross-entropy over queries, plus its mask
      BCE + dice (``ref.*`` losses).
    * ``captioning`` (``captions`` metainfo): ``L_it``, bidirectional image-text contrastive
      loss between the global query and the caption embeddings of the batch, and ``L_cap``,
      next-token cross-entropy of the text queries against the token-embedding table.

    Args:
        backbone, pixel_decoder: as in the core's ``OpenVocabMaskSegmentor``.
        query_decoder: :class:`XDecoderQueryDecoder`.
        text_encoder: the core's ``OpenCLIPTextEncoder`` (causal, CLIP tokenizer).
        head: :class:`XDecoderHead`.
        mask_loss: the core's ``MaskClassificationLoss`` (matcher, class/mask/dice weights).
        postprocessor: the core's ``MaskPostProcessor``.
        caption_weight: weight of ``L_cap``.
        retrieval_weight: weight of ``L_it``.
        background: the concept name that stands for "no object".
        thing_classes, stuff_classes: the initial vocabulary.
        default_task: task of samples without ``task`` metainfo.
        test_cfg: ``beam_size`` (1 = greedy; the paper's 5), ``max_caption_len`` (tokens),
            ``length_penalty``, ``mask_threshold`` (referring).
        data_preprocessor: e.g. mmdet ``DetDataPreprocessor``.
    """

    def __init__(self, backbone: dict, pixel_decoder: dict, query_decoder: dict,
                 text_encoder: dict, head: dict, mask_loss: dict, postprocessor: dict,
                 caption_weight: float = 1.0, retrieval_weight: float = 1.0,
                 background: str = 'background', thing_classes: Sequence[str] = (),
                 stuff_classes: Sequence[str] = (), default_task: str = 'generic',
                 test_cfg: Optional[dict] = None, data_preprocessor: Optional[dict] = None,
                 init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if default_task not in DATA_TASKS:
            raise ValueError(f'default_task must be one of {DATA_TASKS}, not {default_task!r}')
        self.backbone = MODELS.build(backbone)
        self.pixel_decoder = MODELS.build(pixel_decoder)
        self.query_decoder = MODELS.build(query_decoder)
        self.text_encoder = MODELS.build(text_encoder)
        self.head = MODELS.build(head)
        self.mask_loss = MODELS.build(mask_loss)
        self.postprocessor = MODELS.build(postprocessor)
        self.caption_weight = caption_weight
        self.retrieval_weight = retrieval_weight
        self.background = background
        self.default_task = default_task
        self.test_cfg = dict(dict(beam_size=5, max_caption_len=30, length_penalty=1.0,
                                  mask_threshold=0.5), **(test_cfg or {}))
        if thing_classes or stuff_classes:
            self.set_vocabulary(thing_classes, stuff_classes)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Direct loading of an official checkpoint (``load_from``, ``tools/test.py``): convert
        # it in place before this module and its children read their keys.
        ours = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if is_official(ours):
            for key in [k for k in state_dict if k.startswith(prefix)]:
                del state_dict[key]
            state_dict.update({prefix + k: v for k, v in convert_official(ours).items()})
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ vocabulary and text
    def set_vocabulary(self, thing_classes: Sequence[str],
                       stuff_classes: Sequence[str] = ()) -> None:
        if self.background in list(thing_classes) + list(stuff_classes):
            raise ValueError(f'{self.background!r} is the "no object" concept of X-Decoder; '
                             'rename that class')
        super().set_vocabulary(thing_classes, stuff_classes)

    def concept_embeddings(self) -> Tensor:
        """``(K + 1, D)`` unit embeddings of the vocabulary, "background" last (cached by a
        frozen encoder, so thousands of names cost one encoding)."""
        if not self.classes:
            raise RuntimeError('no vocabulary: call set_vocabulary() or give thing_classes')
        return self.text_encoder.encode_vocabulary(self.classes + (self.background,))

    def encode_texts(self, texts: Sequence[str]) -> Dict[str, Tensor]:
        """Sentences -> ``tokens (N, n, W)`` (as long as the longest), ``padding (N, n)`` and
        unit ``embeds (N, D)`` (the end token's feature, projected)."""
        encoded = self.text_encoder(list(texts))
        return dict(tokens=encoded['token_feats'], padding=~encoded['mask'],
                    embeds=F.normalize(encoded['pooled'], dim=-1))

    # ------------------------------------------------------------------ network pieces
    def extract_feats(self, inputs: Tensor) -> Features:
        """``(B, 3, H, W)`` -> :class:`Features`."""
        maps = list(self.backbone(inputs))
        mask_features, memories = self.pixel_decoder(maps)
        return Features(mask_features, memories, maps[-1].mean((2, 3)))

    @staticmethod
    def _take(feats: Features, index: Tensor) -> Features:
        return Features(feats.mask_features[index], [m[index] for m in feats.memories],
                        feats.pooled[index])

    @staticmethod
    def _repeat(feats: Features, times: int) -> Features:
        return Features(feats.mask_features.repeat_interleave(times, 0),
                        [m.repeat_interleave(times, 0) for m in feats.memories],
                        feats.pooled.repeat_interleave(times, 0))

    def _group(self, data_samples: SampleList) -> Dict[str, List[int]]:
        groups = defaultdict(list)
        for i, sample in enumerate(data_samples):
            task = sample.metainfo.get('task', self.default_task)
            if task not in DATA_TASKS:
                raise ValueError(f'sample {i} has task {task!r}; X-Decoder data tasks are '
                                 f'{DATA_TASKS}')
            groups[task].append(i)
        return groups

    # ------------------------------------------------------------------ losses
    def loss(self, inputs: Tensor, data_samples: SampleList) -> Dict[str, Tensor]:
        feats = self.extract_feats(inputs)
        losses = {}
        for task, index in self._group(data_samples).items():
            sub = self._take(feats, inputs.new_tensor(index, dtype=torch.long))
            samples = [data_samples[i] for i in index]
            losses.update(getattr(self, f'_loss_{task}')(sub, samples))
        return losses

    def _loss_generic(self, feats: Features, samples: SampleList) -> Dict[str, Tensor]:
        decoded = self.query_decoder(feats.mask_features, feats.memories, task='generic')
        concepts = self.concept_embeddings()
        cls_logits = [self.head.classify(q, concepts) for q in decoded['object_embeds']]
        gt_labels, gt_masks = self.panoptic_targets(samples)
        return self.mask_loss(cls_logits, decoded['mask_logits'], gt_labels, gt_masks)

    def _referring_logits(self, feats: Features, phrases: Sequence[str]) -> Dict[str, List]:
        """Decode with the phrases as text queries; per layer ``(B, Q)`` logits of each object
        query being the phrase and ``(B, Q, H/4, W/4)`` mask logits."""
        text = self.encode_texts(phrases)
        decoded = self.query_decoder(feats.mask_features, feats.memories, task='referring',
                                     text_queries=text['tokens'],
                                     text_padding=text['padding'])
        logits = [self.head.phrase_logits(q, text['embeds']) for q in decoded['object_embeds']]
        return dict(logits=logits, mask_logits=decoded['mask_logits'])

    def _loss_referring(self, feats: Features, samples: SampleList) -> Dict[str, Tensor]:
        """Which query is the phrase: cross-entropy over the queries for the one matched to the
        referred mask (Hungarian on phrase probability + point BCE + dice), and that query's
        mask losses, every layer. No "background" concept here: the other queries may hold
        other objects, which generic segmentation must keep classifying."""
        outputs = self._referring_logits(feats, [s.text for s in samples])
        gt_masks = [s.gt_instances.masks.to_tensor(torch.long, feats.mask_features.device)
                    if hasattr(s.gt_instances.masks, 'to_tensor')
                    else s.gt_instances.masks.long() for s in samples]
        if any(len(m) != 1 for m in gt_masks):
            raise ValueError('a referring sample needs exactly one target mask (the referred '
                             'object); got ' + ', '.join(str(len(m)) for m in gt_masks))
        gt_labels = [m.new_zeros(1) for m in gt_masks]
        losses = {}
        last = len(outputs['logits']) - 1
        for layer, (logits, masks) in enumerate(zip(outputs['logits'],
                                                    outputs['mask_logits'])):
            # The matcher's class cost is then each query's probability of being the phrase.
            as_classes = torch.stack([logits, torch.zeros_like(logits)], dim=-1)
            matches = self.mask_loss.match(as_classes, masks, gt_labels, gt_masks)
            target = torch.cat([q for q, _ in matches])
            prefix = 'ref.' if layer == last else f'ref.d{layer}.'
            losses[prefix + 'loss_cls'] = self.mask_loss.class_weight * F.cross_entropy(
                logits, target)
            for name, value in self.mask_loss.mask_losses(masks, matches, gt_masks).items():
                losses[prefix + name] = value
        return losses

    def _loss_captioning(self, feats: Features, samples: SampleList) -> Dict[str, Tensor]:
        # One of each image's captions per step; torch's generator so resuming is exact.
        captions = [s.captions[int(torch.randint(len(s.captions), ()))] for s in samples]
        # One tower pass serves both losses: the tower is causal, so the features of
        # ``[start, w_1..w_k]`` are the teacher-forcing queries, and the end token's feature is
        # the caption embedding.
        encoded = self.text_encoder(captions)
        ids = encoded['token_ids']
        inputs, targets = ids[:, :-1], ids[:, 1:]
        decoded = self.query_decoder(feats.mask_features, feats.memories, task='captioning',
                                     text_queries=encoded['token_feats'][:, :-1],
                                     text_padding=inputs == 0)
        logits = self.head.caption_logits(decoded['text_embeds'][-1],
                                          self.text_encoder.token_embedding_table)
        loss_caption = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=0)
        # Latent queries do not attend text under the captioning mask, so the global query
        # here is the retrieval embedding.
        text = F.normalize(encoded['pooled'], dim=-1)
        losses = dict(loss_caption=self.caption_weight * loss_caption,
                      loss_it=self.retrieval_weight * self._contrastive(
                          self.head.embed(decoded['global_embeds'][-1]), text))
        if self.head.backbone_proj is not None:
            backbone = F.normalize(feats.pooled @ self.head.backbone_proj, dim=-1)
            losses['loss_it_backbone'] = self.retrieval_weight * self._contrastive(backbone,
                                                                                   text)
        return losses

    def _contrastive(self, images: Tensor, texts: Tensor) -> Tensor:
        """Bidirectional image-text cross-entropy over the batch (paper Eq. 8)."""
        sim = self.head.similarity(images, texts)
        target = torch.arange(len(images), device=sim.device)
        return (F.cross_entropy(sim, target) + F.cross_entropy(sim.t(), target)) / 2

    # ------------------------------------------------------------------ inference primitives
    def generic_logits(self, feats: Features) -> Dict[str, Tensor]:
        """Last layer's ``cls_logits (B, m-1, K+1)`` and ``mask_logits (B, m-1, H/4, W/4)``."""
        decoded = self.query_decoder(feats.mask_features, feats.memories, task='generic')
        return dict(cls_logits=self.head.classify(decoded['object_embeds'][-1],
                                                  self.concept_embeddings()),
                    mask_logits=decoded['mask_logits'][-1])

    def refer(self, feats: Features, phrases: Sequence[str]) -> Tuple[Tensor, Tensor]:
        """One phrase per image -> the best query's mask logits ``(B, H/4, W/4)`` and its
        share of the softmax over queries ``(B,)``."""
        outputs = self._referring_logits(feats, phrases)
        scores, best = outputs['logits'][-1].softmax(-1).max(1)
        masks = outputs['mask_logits'][-1][torch.arange(len(best)), best]
        return masks, scores

    def image_embeddings(self, feats: Features) -> Tensor:
        """``(B, D')`` unit image embeddings from the global query (retrieval task); with the
        backbone ensemble ``D' = 2D``. Score with :meth:`text_embeddings` by dot product."""
        decoded = self.query_decoder(feats.mask_features, feats.memories, task='retrieval')
        return self.head.image_embed(decoded['global_embeds'][-1], feats.pooled)

    def text_embeddings(self, texts: Sequence[str]) -> Tensor:
        """``(N, D')`` unit text embeddings for retrieval."""
        return self.head.text_embed(F.normalize(self.text_encoder(list(texts))['pooled'],
                                                dim=-1))

    def caption(self, feats: Features, beam_size: Optional[int] = None,
                region: Optional[Tensor] = None) -> List[str]:
        """Caption each image; ``region (B, h, w)`` in ``[0, 1]`` restricts what the text
        queries see (referring captioning). ``beam_size`` 1 is greedy decoding."""
        beam_size = beam_size or self.test_cfg['beam_size']
        batch = feats.mask_features.shape[0]
        feats = self._repeat(feats, beam_size)
        if region is not None:
            region = region.repeat_interleave(beam_size, 0)
        table = self.text_encoder.token_embedding_table

        def step(ids: Tensor) -> Tensor:
            prefix = self.text_encoder.encode_ids(ids)['token_feats']
            decoded = self.query_decoder(feats.mask_features, feats.memories, task='captioning',
                                         text_queries=prefix, text_region=region)
            last = decoded['text_embeds'][-1][:, -1]
            return self.head.caption_logits(last, table).log_softmax(-1)

        args = dict(start_id=self.text_encoder.start_token_id,
                    end_id=self.text_encoder.end_token_id,
                    max_len=self.test_cfg['max_caption_len'], device=feats.mask_features.device)
        if beam_size == 1:
            ids = greedy_search(step, batch, **args)
        else:
            ids = beam_search(step, batch, beam_size,
                              length_penalty=self.test_cfg['length_penalty'], **args)
        return [self.text_encoder.decode(row) for row in ids]

    def region_retrieval(self, inputs: Tensor, phrase: str, topk: int = 1) -> Dict[str, Tensor]:
        """Task composition: rank the images by their similarity to ``phrase`` (retrieval),
        then ground the phrase in the ``topk`` best (referring).

        Returns:
            dict: ``scores (B,)`` image-text similarities, ``indices (topk,)`` of the
            retrieved images, ``masks (topk, H/4, W/4)`` logits of the phrase in each.
        """
        feats = self.extract_feats(inputs)
        scores = self.image_embeddings(feats) @ self.text_embeddings([phrase])[0]
        indices = scores.topk(min(topk, len(scores))).indices
        masks, _ = self.refer(self._take(feats, indices), [phrase] * len(indices))
        return dict(scores=scores, indices=indices, masks=masks)

    def referring_caption(self, inputs: Tensor, phrases: Sequence[str],
                          beam_size: Optional[int] = None) -> Dict[str, object]:
        """Task composition: ground each image's phrase, then caption with the text queries'
        cross-attention restricted to the grounded mask.

        Returns:
            dict: ``captions`` (list of str) and ``masks (B, H/4, W/4)`` logits.
        """
        feats = self.extract_feats(inputs)
        masks, _ = self.refer(feats, phrases)
        return dict(captions=self.caption(feats, beam_size, region=masks.sigmoid()),
                    masks=masks)

    def mask_to_image(self, logits: Tensor, inputs: Tensor, meta: dict) -> Tensor:
        """``(h, w)`` mask logits at 1/4 of one padded ``(3, H, W)`` input -> the binary mask
        ``(H_ori, W_ori)`` (padding cropped, resized to the original image)."""
        logits = F.interpolate(logits[None, None], size=inputs.shape[-2:], mode='bilinear',
                               align_corners=False)
        height, width = meta['img_shape'][:2]
        logits = logits[..., :height, :width]
        if tuple(meta['ori_shape'][:2]) != (height, width):
            logits = F.interpolate(logits, size=meta['ori_shape'][:2], mode='bilinear',
                                   align_corners=False)
        return logits[0, 0].sigmoid() > self.test_cfg['mask_threshold']

    # ------------------------------------------------------------------ predict
    def predict(self, inputs: Tensor, data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        feats = self.extract_feats(inputs)
        for task, index in self._group(data_samples).items():
            sub = self._take(feats, inputs.new_tensor(index, dtype=torch.long))
            samples = [data_samples[i] for i in index]
            getattr(self, f'_predict_{task}')(sub, inputs[index], samples, rescale)
        return data_samples

    def _predict_generic(self, feats, inputs, samples, rescale) -> None:
        outputs = self.generic_logits(feats)
        self.segment(outputs['cls_logits'], outputs['mask_logits'], inputs, samples, rescale)

    def _predict_referring(self, feats, inputs, samples, rescale) -> None:
        masks, scores = self.refer(feats, [s.text for s in samples])
        for i, sample in enumerate(samples):
            sample.pred_instances = InstanceData(
                masks=self.mask_to_image(masks[i], inputs[i], sample.metainfo)[None],
                scores=scores[i:i + 1], labels=scores.new_zeros(1, dtype=torch.long))

    def _predict_captioning(self, feats, inputs, samples, rescale) -> None:
        for sample, text in zip(samples, self.caption(feats)):
            sample.pred_caption = text
        images = self.image_embeddings(feats)
        references = [list(s.metainfo.get('captions') or []) for s in samples]
        # All references of the batch in one encoder pass, then split per image.
        texts = self.text_embeddings(sum(references, [])) if any(references) else None
        start = 0
        for sample, image, refs in zip(samples, images, references):
            sample.pred_image_embed = image
            if refs:
                sample.pred_text_embeds = texts[start:start + len(refs)]
                start += len(refs)

    def tensor_outputs(self, inputs: Tensor) -> Dict[str, Tensor]:
        """``mode='tensor'``: the generic outputs of :meth:`generic_logits`."""
        return self.generic_logits(self.extract_feats(inputs))
