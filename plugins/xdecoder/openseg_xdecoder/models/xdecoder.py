"""X-Decoder: one decoder for generic and referring segmentation, retrieval and captioning."""
from collections import defaultdict
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmdet.structures import SampleList
from torch import Tensor, nn

from openseg_core.models import (MaskClassificationModel, MaskClassificationOutput,
                                 Vocabulary)
from openseg_core.models.interfaces import implements
from openseg_core.models.language import StepOutput, generate
from openseg_core.models.mask_classification.query_decoder import resize_masks

from ..registry import MODELS


class Features(NamedTuple):
    """What the image side computes once per batch and every task decodes from."""
    mask_features: Tensor   #: ``(B, C, H/4, W/4)``
    memories: List[Tensor]  #: pixel-decoder maps, low to high resolution
    pooled: Tensor          #: ``(B, C_5)`` average of the last backbone map

    def take(self, index: Union[Tensor, Sequence[int]]) -> 'Features':
        """The images at ``index``: these features themselves when that is the whole batch
        in order (a batch of one task, the usual case: indexing would copy every map, 15 ms
        for a 512 x 512 image's), else copies."""
        if [int(i) for i in index] == list(range(len(self.mask_features))):
            return self
        index = torch.as_tensor(index, dtype=torch.long, device=self.mask_features.device)
        return Features(self.mask_features[index], [m[index] for m in self.memories],
                        self.pooled[index])

    def repeat(self, times: int) -> 'Features':
        """Each image ``times`` times in a row (beam search)."""
        return Features(self.mask_features.repeat_interleave(times, 0),
                        [m.repeat_interleave(times, 0) for m in self.memories],
                        self.pooled.repeat_interleave(times, 0))


@implements('Model', example='xdecoder::xdecoder_tiny_shapes_mixed.py',
            inputs=dict(tasks=('panoptic', 'referring', 'captioning')))
@MODELS.register_module()
class XDecoder(MaskClassificationModel):
    """Backbone -> pixel decoder -> :class:`XDecoderQueryDecoder` -> :class:`XDecoderHead`,
    with one text encoder for class names, referring phrases, captions and retrieval texts.

    A batch may mix tasks (each sample's ``task``, default ``default_task``): the image
    features are computed once and each task's samples go to that task's component in
    ``tasks`` (``xdecoder.GenericTask``, ``xdecoder.ReferringTask``,
    ``xdecoder.CaptioningTask``), which decodes them with its own queries and attention mask
    and computes its own losses and predictions, as in the paper's pre-training.

    Args:
        backbone, pixel_decoder: as in the core's ``MaskClassificationModel``.
        query_decoder: :class:`XDecoderQueryDecoder`.
        text_encoder: the core's ``OpenCLIPTextEncoder`` (causal, CLIP tokenizer).
        head: :class:`XDecoderHead`.
        criterion: the core's ``MaskClassificationCriterion`` (generic segmentation; the
            referring task reuses its matcher and mask losses).
        postprocessor: the core's ``MaskPostProcessor``.
        tasks: ``{task name: task component config}``; samples name their task.
        background: the concept name that stands for "no object".
        strip_from_class_names: substrings removed from class names before prompting (the
            official model strips COCO's ``-other``, ``-merged``, ``-stuff``).
        project_text_queries: pass every token feature the decoder reads (referring phrases,
            caption prefixes) through the text encoder's projection, as the official model
            does with ``lang_proj``; off, the decoder reads the tower's token features (the
            projection then serves the pooled embedding only).
        thing_classes, stuff_classes: the initial vocabulary.
        default_task: task of samples without a ``task``.
        test_cfg: ``beam_size`` (1 = greedy, the official release; the paper's 5),
            ``max_caption_len`` (tokens), ``length_penalty``, ``caption_stop`` (text after
            this string is cut, the official ``'.'``), ``caption_cache`` (decode captions
            incrementally, default True: see :meth:`caption_step_fn`), ``mask_threshold``
            (referring).
        data_preprocessor: e.g. the core's ``MultiTaskDataPreprocessor``.
    """

    def __init__(self, backbone: dict, pixel_decoder: dict, query_decoder: dict,
                 text_encoder: dict, head: dict, criterion: dict, postprocessor: dict,
                 tasks: Dict[str, dict], background: str = 'background',
                 strip_from_class_names: Sequence[str] = (), project_text_queries: bool = True,
                 thing_classes: Sequence[str] = (), stuff_classes: Sequence[str] = (),
                 default_task: str = 'generic', test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None, channels_last: bool = False,
                 init_cfg=None):
        self.background = background
        self.strip_from_class_names = tuple(strip_from_class_names)
        self.project_text_queries = project_text_queries
        if default_task not in tasks:
            raise ValueError(f'default_task {default_task!r} is not among the configured tasks '
                             f'{sorted(tasks)}')
        super().__init__(backbone, pixel_decoder, query_decoder, text_encoder, head, criterion,
                         postprocessor, thing_classes=thing_classes,
                         stuff_classes=stuff_classes, data_preprocessor=data_preprocessor,
                         channels_last=channels_last, init_cfg=init_cfg)
        self.tasks = nn.ModuleDict({name: MODELS.build(cfg) for name, cfg in tasks.items()})
        self.default_task = default_task
        self.test_cfg = dict(dict(beam_size=5, max_caption_len=30, length_penalty=1.0,
                                  caption_stop=None, caption_cache=True, mask_threshold=0.5),
                             **(test_cfg or {}))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if any(k.startswith(prefix + 'sem_seg_head.') for k in state_dict):
            raise ValueError('this is an official X-Decoder checkpoint: convert it first with '
                             '`python tools/convert_checkpoint.py xdecoder_official SRC DST` '
                             'and load DST')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ vocabulary and text
    def validate_vocabulary(self, vocabulary: Vocabulary) -> None:
        if self.background in vocabulary.names:
            raise ValueError(f'{self.background!r} is the "no object" concept of X-Decoder; '
                             'rename that class')

    def concept_embeddings(self) -> Tensor:
        """``(K + 1, D)`` unit embeddings of the vocabulary, "background" last (cached by a
        frozen encoder, so thousands of names cost one encoding)."""
        names = self.require_vocabulary().names + (self.background,)
        for part in self.strip_from_class_names:
            names = tuple(name.replace(part, '') for name in names)
        return self.text_encoder.encode_vocabulary(names)

    def text_queries(self, token_feats: Tensor) -> Tensor:
        """``(N, n, W)`` token features -> what the decoder reads as text queries (projected
        with ``project_text_queries``)."""
        return self.text_encoder.project(token_feats) if self.project_text_queries \
            else token_feats

    def encode_texts(self, texts: Sequence[str]) -> Dict[str, Tensor]:
        """Sentences -> text queries ``tokens (N, n, W')`` (see :meth:`text_queries`; as long
        as the longest), ``padding (N, n)`` and unit ``embeds (N, D)`` (the end token's
        feature, projected)."""
        encoded = self.text_encoder(list(texts))
        return dict(tokens=self.text_queries(encoded.token_feats), padding=~encoded.mask,
                    embeds=F.normalize(encoded.pooled, dim=-1))

    # ------------------------------------------------------------------ network pieces
    def extract_feat(self, inputs: Tensor) -> Features:
        """``(B, 3, H, W)`` -> :class:`Features`."""
        maps = list(self.backbone(inputs))
        mask_features, memories = self.pixel_decoder(maps)
        return Features(mask_features, memories, maps[-1].mean((2, 3)))

    def _group(self, data_samples: SampleList) -> Dict[str, List[int]]:
        groups = defaultdict(list)
        for i, sample in enumerate(data_samples):
            task = sample.get('task', self.default_task)
            if task not in self.tasks:
                raise ValueError(f'sample {i} has task {task!r}; this X-Decoder has tasks '
                                 f'{sorted(self.tasks)}')
            groups[task].append(i)
        return groups

    def loss(self, inputs: Tensor, data_samples: SampleList) -> Dict[str, Tensor]:
        feats = self.extract_feat(inputs)
        losses = {}
        for task, index in self._group(data_samples).items():
            sub = feats.take(index)
            losses.update(self.tasks[task].loss(self, sub, [data_samples[i] for i in index]))
        return losses

    def predict(self, inputs: Tensor, data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        feats = self.extract_feat(inputs)
        for task, index in self._group(data_samples).items():
            sub = feats.take(index)
            samples = [data_samples[i] for i in index]
            results = self.tasks[task].predict(self, sub, samples, rescale)
            self.add_pred_to_datasample(samples, results)
        return data_samples

    def _forward(self, inputs: Tensor,
                 data_samples: Optional[SampleList] = None) -> MaskClassificationOutput:
        """``mode='tensor'``: generic segmentation's class and mask logits per prediction."""
        return self.generic_outputs(self.extract_feat(inputs))

    # ------------------------------------------------------------------ task primitives
    def generic_outputs(self, feats: Features,
                        intermediate_masks: bool = True) -> MaskClassificationOutput:
        """Per prediction ``cls_logits (B, Q, K+1)`` (background last) and ``mask_logits
        (B, Q, H/4, W/4)`` of the ``Q = m - 1`` object queries, and of the re-weighted global
        query too (``Q = m``) when the decoder has one (the official 101st candidate).
        ``intermediate_masks=False`` (inference): masks of the last prediction only, the
        others ``None``."""
        decoded = self.query_decoder(feats.mask_features, feats.memories, task='generic',
                                     intermediate_masks=intermediate_masks)
        embeds, masks = decoded.query_embeds, decoded.mask_logits
        if decoded.global_mask_logits is not None:
            embeds = [torch.cat([q, g[:, None]], 1) for q, g in zip(embeds,
                                                                     decoded.global_embeds)]
            masks = [None if m is None else torch.cat([m, g[:, None]], 1)
                     for m, g in zip(masks, decoded.global_mask_logits)]
        concepts = self.concept_embeddings()
        return MaskClassificationOutput(cls_logits=[self.head(q, concepts) for q in embeds],
                                        mask_logits=masks)

    def referring_outputs(self, feats: Features, phrases: Sequence[str],
                          intermediate_masks: bool = True) -> Dict[str, List]:
        """Decode with the phrases as text queries; per prediction ``(B, Q)`` logits of each
        object query being the phrase and ``(B, Q, H/4, W/4)`` mask logits (``None`` but
        the last with ``intermediate_masks=False``)."""
        text = self.encode_texts(phrases)
        decoded = self.query_decoder(feats.mask_features, feats.memories, task='referring',
                                     text_queries=text['tokens'],
                                     text_padding=text['padding'],
                                     intermediate_masks=intermediate_masks)
        if decoded.copy_embeds is not None:  # official grounding: the copies answer
            embeds, masks = decoded.copy_embeds, decoded.copy_mask_logits
        else:
            embeds, masks = decoded.query_embeds, decoded.mask_logits
        return dict(logits=[self.head.phrase_logits(q, text['embeds']) for q in embeds],
                    mask_logits=masks)

    def refer(self, feats: Features, phrases: Sequence[str]) -> Tuple[Tensor, Tensor]:
        """One phrase per image -> the best query's mask logits ``(B, H/4, W/4)`` and its
        share of the softmax over queries ``(B,)``."""
        outputs = self.referring_outputs(feats, phrases, intermediate_masks=False)
        scores, best = outputs['logits'][-1].softmax(-1).max(1)
        masks = outputs['mask_logits'][-1][torch.arange(len(best)), best]
        return masks, scores

    def image_embeddings(self, feats: Features) -> Tensor:
        """``(B, D')`` unit image embeddings from the global query (retrieval task); with the
        backbone ensemble ``D' = 2D``. Score with :meth:`text_embeddings` by dot product."""
        # No mask is read here, only the attention masks.
        decoded = self.query_decoder(feats.mask_features, feats.memories, task='retrieval',
                                     intermediate_masks=False)
        return self.head.image_embed(decoded.global_embeds[-1], feats.pooled)

    def text_embeddings(self, texts: Sequence[str]) -> Tensor:
        """``(N, D')`` unit text embeddings for retrieval."""
        return self.head.text_embed(F.normalize(self.text_encoder(list(texts)).pooled, dim=-1))

    def caption_step_fn(self, feats: Features, beam_size: int = 1,
                        region: Optional[Tensor] = None,
                        cache: Optional[bool] = None) -> Callable[[Tensor, Any], StepOutput]:
        """The step function :meth:`caption` gives the core's ``generate`` for ``B`` images
        and ``beam_size`` rows per image.

        ``cache`` (default ``test_cfg['caption_cache']``): decode incrementally. The latent
        queries do not attend text under the captioning mask, so they are decoded once per
        image (:meth:`XDecoderQueryDecoder.caption_context`); each step then runs only the
        newest token through the text tower (its keys / values cached,
        ``OpenCLIPTextEncoder.encode_next_ids``) and the decoder layers (the earlier tokens'
        keys / values cached, :meth:`XDecoderQueryDecoder.caption_step`), and the cache rows
        follow the beams. Same logits as without, to float rounding. Where the cache does not
        apply (training mode, a decoder layer that is not torch's plain attention) the step
        re-runs the decoder on the whole prefix; a text tower without an incremental path is
        re-run on the prefix while the decoder still decodes one token.
        """
        use_cache = self.test_cfg['caption_cache'] if cache is None else cache
        table = self.text_encoder.token_embedding_table
        if not (use_cache and self.query_decoder.supports_caption_cache()):
            feats = feats.repeat(beam_size)
            if region is not None:
                region = region.repeat_interleave(beam_size, 0)

            def full_step(ids: Tensor, past: None) -> StepOutput:
                prefix = self.text_queries(self.text_encoder.encode_ids(ids))
                decoded = self.query_decoder(feats.mask_features, feats.memories,
                                             task='captioning', text_queries=prefix,
                                             text_region=region)
                return StepOutput(self.head.caption_logits(decoded.text_embeds[-1][:, -1],
                                                           table))
            return full_step

        context = self.query_decoder.caption_context(feats.mask_features, feats.memories,
                                                     region, beams=beam_size)
        incremental_text = getattr(self.text_encoder, 'supports_incremental', False)

        def cached_step(ids: Tensor, past: Optional[dict]) -> StepOutput:
            # ``ids``: the whole prefix at the first step, then the newest token.
            past = past or dict(ids=ids[:, :0], text=None, decoder=None)
            prefix = torch.cat([past['ids'], ids], dim=1)
            if incremental_text:
                token_feats, text_past = self.text_encoder.encode_next_ids(ids, past['text'])
            else:
                token_feats = self.text_encoder.encode_ids(prefix)[:, -ids.shape[1]:]
                text_past = None
            embeds, decoder_past = self.query_decoder.caption_step(
                self.text_queries(token_feats), context, past['decoder'])
            return StepOutput(self.head.caption_logits(embeds[:, -1], table),
                              dict(ids=prefix, text=text_past, decoder=decoder_past))
        return cached_step

    def caption(self, feats: Features, beam_size: Optional[int] = None,
                region: Optional[Tensor] = None, cache: Optional[bool] = None) -> List[str]:
        """Caption each image; ``region (B, h, w)`` in ``[0, 1]`` restricts what the text
        queries see (referring captioning). ``beam_size`` 1 is greedy decoding; ``cache``
        (default ``test_cfg['caption_cache']``, True) decodes incrementally
        (:meth:`caption_step_fn`; the same captions)."""
        beam_size = beam_size or self.test_cfg['beam_size']
        step = self.caption_step_fn(feats, beam_size, region, cache)
        start = torch.full((feats.mask_features.shape[0], 1), self.text_encoder.start_token_id,
                           dtype=torch.long, device=feats.mask_features.device)
        out = generate(step, start, self.text_encoder.end_token_id,
                       self.test_cfg['max_caption_len'], beam_size=beam_size,
                       length_penalty=self.test_cfg['length_penalty'])
        captions = [self.text_encoder.decode(row) for row in out.sequences]
        stop = self.test_cfg['caption_stop']
        return [c.split(stop)[0] for c in captions] if stop else captions

    # ------------------------------------------------------------------ task compositions
    def region_retrieval(self, inputs: Tensor, phrase: str, topk: int = 1) -> Dict[str, Tensor]:
        """Rank the images by their similarity to ``phrase`` (retrieval), then ground the
        phrase in the ``topk`` best (referring).

        Returns:
            dict: ``scores (B,)`` image-text similarities, ``indices (topk,)`` of the
            retrieved images, ``masks (topk, H/4, W/4)`` logits of the phrase in each.
        """
        feats = self.extract_feat(inputs)
        scores = self.image_embeddings(feats) @ self.text_embeddings([phrase])[0]
        indices = scores.topk(min(topk, len(scores))).indices
        masks, _ = self.refer(feats.take(indices), [phrase] * len(indices))
        return dict(scores=scores, indices=indices, masks=masks)

    def referring_caption(self, inputs: Tensor, phrases: Sequence[str],
                          beam_size: Optional[int] = None) -> Dict[str, object]:
        """Ground each image's phrase, then caption with the text queries' cross-attention
        restricted to the grounded mask.

        Returns:
            dict: ``captions`` (list of str) and ``masks (B, H/4, W/4)`` logits.
        """
        feats = self.extract_feat(inputs)
        masks, _ = self.refer(feats, phrases)
        return dict(captions=self.caption(feats, beam_size, region=masks.sigmoid()),
                    masks=masks)

    def mask_to_image(self, logits: Tensor, batch_input_shape, meta: dict) -> Tensor:
        """``(h, w)`` mask logits at 1/4 of the padded batch -> the binary mask
        ``(H_ori, W_ori)`` (padding cropped, resized to the original image)."""
        mode = self.postprocessor.mask_interpolation
        logits = resize_masks(logits[None, None], batch_input_shape, mode)
        height, width = meta['img_shape'][:2]
        logits = logits[..., :height, :width]
        if tuple(meta['ori_shape'][:2]) != (height, width):
            logits = resize_masks(logits, meta['ori_shape'][:2], mode)
        return logits[0, 0].sigmoid() > self.test_cfg['mask_threshold']
