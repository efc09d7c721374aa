"""PixelLLM (Xu et al., "Pixel Aligned Language Models", CVPR 2024): a language model that
points at every word it says.

Data flow and shapes (``B`` images, ``M`` prompts over the batch, ``T`` tokens)::

    images (B, 3, H, W) --ImageEncoders--> grid (B, C_img, h, w)
    boxes (M, 4) --LocationPromptEncoder--> prompt tokens (M, 5, C_p)
    grid[image of each prompt] + prompt tokens --PromptFeatureExtractor--> prefix (M, 32, D)
    prefix + context tokens ("A long image caption:", "where is {expression}")
        --language model encoder / prompt--> state
    state + [start, tokens] --decoder--> logits (M, T, V), hidden (M, T, D)
    hidden --TraceHead--> points (M, T, 2, 2): per token the corners of its region

Tasks (a sample's ``task``): ``narrative`` (caption + trace, Localized Narratives),
``captioning`` (caption only), ``referring`` (the box from the state that predicts the end
token; a mask from SAM's decoder on it), ``loc_captioning`` (caption of a given box) and
``dense_captioning`` (proposals, then a caption per box).
"""
import random
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData
from torch import Tensor

from openseg_core.models.base import OpenSegModel
from openseg_core.models.interfaces import implements
from openseg_core.models.language import StepOutput, generate
from openseg_core.models.layers import convert_fast_layers

from ..registry import MODELS
from ..tokenizers import build_tokenizer, encode
from .targets import boxes_to_corners, corners_to_boxes, token_boxes, token_words

TASKS = ('narrative', 'captioning', 'referring', 'loc_captioning', 'dense_captioning')
#: What each task trains by default (the official per-dataset task masks).
TASK_LOSSES = dict(narrative=('caption', 'point'), captioning=('caption',),
                   referring=('point', 'mask'), loc_captioning=('caption',),
                   dense_captioning=('caption', 'proposal'))
#: The context each task puts after the prefix (official prompts; the referring one is
#: formatted with the expression).
PROMPTS = dict(narrative='A long image caption:', captioning='A short image caption:',
               referring='where is {}', loc_captioning='an object of',
               dense_captioning='an object of')


@implements('Model', example='pixelllm::pixelllm_tiny_shapes_referring.py',
            inputs=dict(tasks=('referring',)))
@MODELS.register_module()
class PixelLLM(OpenSegModel):
    """See the module docstring.

    Args:
        image_encoder: :class:`~.image_encoders.ImageEncoders` config.
        prompt_encoder: :class:`~.prompt_encoder.LocationPromptEncoder` config.
        prompt_extractor: :class:`~.prompt_feature_extractor.PromptFeatureExtractor` config;
            its ``image_channels``, ``prompt_channels`` and ``out_channels`` default to the
            parts around it.
        language_model: :class:`~.language_models.T5LanguageModel` or
            :class:`~.language_models.CausalLanguageModel` config.
        tokenizer: see :func:`~openseg_pixelllm.tokenizers.build_tokenizer`.
        trace_head: :class:`~.trace_head.TraceHead` config (``in_channels`` = ``d_model``).
        mask_head: :class:`~.mask_head.SamMaskHead` config, or ``None``.
        mask_feature: which image map the mask head reads (an encoder's name, or ``'all'``).
        proposal_head: ``dict(neck=..., head=...)``: a feature pyramid and an mmdet dense
            head (CenterNet) proposing boxes for dense captioning, or ``None``.
        prompts: the context of each task (:data:`PROMPTS`).
        task_losses: the losses of each task (:data:`TASK_LOSSES`).
        loss_caption: token loss config (label-smoothed cross-entropy).
        point_loss_weight: lambda of the L1 loss on points, in pixels (official 0.1).
        trace_state: which decoder state a word's points come from: ``'token'``, the state
            that reads the word (the official code), or ``'prediction'``, the one that
            predicts it (the paper's equation).
        token_alignment: ``'relative'`` (official) or ``'words'``; see :mod:`.targets`.
        max_caption_len: tokens of a caption, end token included.
        max_context_len: tokens of a context, end token included.
        train_cfg: ``box_jitter`` (fraction of a box's size by which dense-captioning
            prompts are jittered in training).
        test_cfg: ``beam_size``, ``length_penalty``, ``no_repeat_ngram_size``, ``use_cache``,
            ``mask_threshold``, ``forced_trace`` (also trace the reference caption,
            teacher-forced, for the trace L1), ``num_proposals``, ``proposal_score_thr``.
    """

    def __init__(self, image_encoder: dict, prompt_encoder: dict, prompt_extractor: dict,
                 language_model: dict, trace_head: dict, tokenizer='shapes',
                 mask_head: Optional[dict] = None, mask_feature: str = 'all',
                 proposal_head: Optional[dict] = None, proposal_feature: str = 'all',
                 prompts: Optional[Dict[str, str]] = None,
                 task_losses: Optional[Dict[str, Sequence[str]]] = None,
                 loss_caption: Optional[dict] = None, point_loss_weight: float = 0.1,
                 trace_state: str = 'token', token_alignment: str = 'relative',
                 max_caption_len: int = 128, max_context_len: int = 8,
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        check_pretrained_files(image_encoder, prompt_encoder, language_model, tokenizer,
                               mask_head)
        if trace_state not in ('token', 'prediction'):
            raise ValueError(f"trace_state must be 'token' or 'prediction', got {trace_state!r}")
        self.image_encoder = MODELS.build(image_encoder)
        self.prompt_encoder = MODELS.build(prompt_encoder)
        self.tokenizer = build_tokenizer(tokenizer)
        language_model = dict(language_model)
        if language_model.get('config') is not None and 'vocab_size' not in \
                language_model['config']:
            # A random language model speaks the tokenizer's vocabulary.
            language_model['config'] = dict(language_model['config'],
                                            vocab_size=len(self.tokenizer))
        self.language_model = MODELS.build(language_model)
        if len(self.tokenizer) > self.language_model.vocab_size:
            raise ValueError(f'the tokenizer has {len(self.tokenizer)} tokens but the language '
                             f'model only {self.language_model.vocab_size}: use the model\'s '
                             'own tokenizer')
        d_model = self.language_model.d_model
        prompt_extractor = dict(prompt_extractor)
        prompt_extractor.setdefault('image_channels', self.image_encoder.out_channels)
        prompt_extractor.setdefault('prompt_channels', self.prompt_encoder.embed_dims)
        prompt_extractor.setdefault('out_channels', d_model)
        self.prompt_extractor = MODELS.build(prompt_extractor)
        self.trace_head = MODELS.build(dict(dict(in_channels=d_model), **trace_head))
        self.mask_feature = mask_feature
        self.mask_head = None
        if mask_head is not None:
            mask_head = dict(mask_head)
            mask_head.setdefault('embed_dims', self.prompt_encoder.embed_dims)
            mask_head.setdefault('in_channels', self._map_channels(mask_feature))
            if mask_head.get('adapter'):
                # The adapter's output is added to SAM's corner embeddings: SAM's width.
                mask_head['adapter'] = dict(dict(prefix_channels=d_model,
                                                 embed_dims=mask_head['embed_dims']),
                                            **mask_head['adapter'])
            self.mask_head = MODELS.build(mask_head)
        self.proposal_feature = proposal_feature
        self.proposal_neck = self.proposal_head = None
        if proposal_head is not None:
            neck = dict(dict(in_channels=self._map_channels(proposal_feature)),
                        **proposal_head['neck'])
            self.proposal_neck = MODELS.build(neck)
            self.proposal_head = MODELS.build(proposal_head['head'])
        self.prompts = dict(PROMPTS, **(prompts or {}))
        self.task_losses = {k: tuple(v) for k, v in dict(TASK_LOSSES,
                                                         **(task_losses or {})).items()}
        self.criterion = MODELS.build(loss_caption or dict(
            type='TokenCrossEntropyLoss', label_smoothing=0.1, smoothing_excludes_target=True))
        self.point_loss_weight = point_loss_weight
        self.trace_state = trace_state
        self.token_alignment = token_alignment
        self.max_caption_len = max_caption_len
        self.max_context_len = max_context_len
        self.train_cfg = dict(dict(box_jitter=0.1), **(train_cfg or {}))
        self.test_cfg = dict(dict(beam_size=1, length_penalty=0.0, no_repeat_ngram_size=0,
                                  use_cache=True, mask_threshold=0.0, forced_trace=False,
                                  num_proposals=20, proposal_score_thr=0.05),
                             **(test_cfg or {}))
        # The core's CPU paths (linear layers through oneDNN: the EVA02-L encoder at 384 px
        # 2.7 -> 1.6 s on 2 cores), the same outputs to float rounding.
        convert_fast_layers(self)

    def _map_channels(self, name: str) -> int:
        if name == 'all':
            return self.image_encoder.out_channels
        return self.image_encoder.channels[name]

    # ------------------------------------------------------------------ features
    def extract_feat(self, inputs: Tensor, data_samples=None) -> Dict[str, Tensor]:
        """``(B, 3, H, W)`` -> the image encoders' maps (``'all'``: the concatenation)."""
        sizes = None if data_samples is None else [s.metainfo['img_shape'][:2]
                                                   for s in data_samples]
        return self.image_encoder(inputs, sizes)

    def prefixes(self, feats: Dict[str, Tensor], image_index: Tensor, boxes: Tensor,
                 input_size: Tuple[int, int]) -> Tensor:
        """Prefix ``(M, num_tokens, D)`` of ``M`` boxes ``(M, 4)`` (input pixels) on the images
        ``image_index (M,)``."""
        grid = feats['all']
        prompts = self.prompt_encoder(boxes[:, None], input_size)  # (M, 1, K, C)
        pe = self.prompt_encoder.dense_pe(grid.shape[-2:])
        height, width = input_size
        fractions = boxes / boxes.new_tensor([width, height, width, height])
        prefix = self.prompt_extractor(grid[image_index], pe, prompts,
                                       self.prompt_encoder.no_mask_embedding,
                                       fractions[:, None])
        return prefix[:, 0]

    def _contexts(self, tasks: Sequence[str], texts: Sequence[Optional[str]],
                  device) -> Tuple[Tensor, Tensor]:
        strings = [self.prompts[t].format(x) if '{}' in self.prompts[t] else self.prompts[t]
                   for t, x in zip(tasks, texts)]
        ids = encode(self.tokenizer, strings, append_eos=True, max_length=self.max_context_len)
        return _pad(ids, self.language_model.pad_id, device)

    def encode_prompts(self, feats, image_index, boxes, input_size, tasks, texts):
        """Language-model state of ``M`` prompts: the prefix of each box and its task's
        context. Returns ``(state, prefix)``."""
        prefix = self.prefixes(feats, image_index, boxes, input_size)
        ids, mask = self._contexts(tasks, texts, prefix.device)
        return self.language_model.encode(prefix, ids, mask), prefix

    # ------------------------------------------------------------------ training
    def loss(self, inputs: Tensor, data_samples) -> Dict[str, Tensor]:
        feats = self.extract_feat(inputs, data_samples)
        input_size = tuple(inputs.shape[-2:])
        rows = self._training_rows(data_samples, inputs.device)
        losses: Dict[str, Tensor] = {}
        share = {name: sum(name in self.task_losses[s.task] for s in data_samples)
                 / len(data_samples) for name in ('caption', 'point', 'mask', 'proposal')}
        if rows['image_index'].numel():
            state, prefix = self.encode_prompts(feats, rows['image_index'], rows['boxes'],
                                                input_size, rows['tasks'], rows['contexts'])
            dec_in, targets, lengths = rows['decoder']
            logits, hidden, _ = self.language_model.decode(state, dec_in)
            caption_rows = torch.tensor(['caption' in self.task_losses[t]
                                         for t in rows['tasks']], device=inputs.device)
            token_mask = (torch.arange(dec_in.shape[1], device=inputs.device)[None]
                          < lengths[:, None]) & caption_rows[:, None]
            if share['caption']:
                losses['loss_caption'] = share['caption'] * self.criterion(
                    logits, targets, token_mask)
            points = self.trace_head(hidden) * rows['scale'][:, None, None, :]
            if share['point']:
                losses['loss_point'] = share['point'] * self.point_loss_weight * point_l1(
                    points, rows['point_targets'])
            if self.mask_head is not None and share['mask'] and rows['mask_rows']:
                losses.update({k: share['mask'] * v for k, v in self._mask_loss(
                    feats, inputs, data_samples, rows, points, prefix, hidden).items()})
        if self.proposal_head is not None and share['proposal']:
            dense = [s for s in data_samples if 'proposal' in self.task_losses[s.task]]
            index = [i for i, s in enumerate(data_samples)
                     if 'proposal' in self.task_losses[s.task]]
            pyramid = self.proposal_neck(feats[self.proposal_feature][index])
            for key, value in self.proposal_head.loss(pyramid, dense).items():
                value = sum(value) if isinstance(value, (list, tuple)) else value
                losses[f'loss_proposal_{key.removeprefix("loss_")}'] = share['proposal'] * value
        if not losses:
            raise ValueError('PixelLLM: the batch has no sample whose task trains anything; '
                             f'known tasks: {", ".join(TASKS)}')
        return losses

    def _training_rows(self, samples, device) -> dict:
        """One row per (image, prompt): its box, context, decoder tokens and point targets."""
        image_index, boxes, tasks, contexts, texts, word_boxes, scales = [], [], [], [], [], [], []
        ref_boxes, mask_rows = [], []
        for i, sample in enumerate(samples):
            task = sample.task
            if task not in TASKS:
                raise ValueError(f'PixelLLM cannot train task {task!r}; choose one of '
                                 f'{", ".join(TASKS)}')
            height, width = sample.metainfo['img_shape'][:2]
            whole = torch.tensor([0.0, 0.0, width, height])
            scale = torch.tensor([float(width), float(height)])
            if task in ('narrative', 'captioning'):
                text = sample.text if task == 'narrative' else random.choice(sample.captions)
                entries = [(whole, None, text, None)]
            elif task == 'referring':
                box = sample.gt_instances.bboxes[0]
                box = getattr(box, 'tensor', box).reshape(4).float().cpu()
                entries = [(whole, sample.text, sample.text, box)]
                mask_rows.append((len(image_index), i))
            elif task == 'loc_captioning':
                box = getattr(sample.gt_instances.bboxes, 'tensor', sample.gt_instances.bboxes)
                entries = [(box[0].float().cpu(), None, sample.text, None)]
            else:  # dense_captioning: every object with one of its captions
                box = getattr(sample.gt_instances.bboxes, 'tensor', sample.gt_instances.bboxes)
                box = self._jitter(box.float().cpu(), (height, width))
                captions = sample.metainfo['gt_captions']
                entries = [(b, None, random.choice(c) if not isinstance(c, str) else c, None)
                           for b, c in zip(box, captions)]
            for prompt_box, context, text, ref_box in entries:
                image_index.append(i)
                boxes.append(prompt_box)
                tasks.append(task)
                contexts.append(context)
                texts.append(text)
                ref_boxes.append(ref_box)
                scales.append(scale)
                word_boxes.append((sample.get('gt_words'), sample.get('gt_word_boxes'))
                                  if task == 'narrative' else None)
        token_ids = encode(self.tokenizer, texts, append_eos=False,
                           max_length=self.max_caption_len - 1)
        start, end = self.language_model.start_id, self.language_model.end_id
        length = max(len(t) for t in token_ids) + 1 if token_ids else 1
        dec_in = torch.full((len(texts), length), self.language_model.pad_id, dtype=torch.long)
        targets = torch.full_like(dec_in, end)
        point_targets = torch.full((len(texts), length, 4), float('nan'))
        for r, ids in enumerate(token_ids):
            n = len(ids)
            dec_in[r, :n + 1] = torch.tensor([start] + ids)
            targets[r, :n + 1] = torch.tensor(ids + [end])
            shift = 1 if self.trace_state == 'token' else 0
            if ref_boxes[r] is not None and 'point' in self.task_losses[tasks[r]]:
                # The state that predicts the end token carries the referred box.
                point_targets[r, n] = ref_boxes[r]
            elif word_boxes[r] is not None and 'point' in self.task_losses[tasks[r]]:
                words, norm = word_boxes[r]
                if words is not None and norm is not None:
                    norm = [None if torch.isnan(torch.as_tensor(b)).any() else list(b)
                            for b in torch.as_tensor(norm).tolist()]
                    per_token = token_boxes(self.tokenizer, texts[r], ids, words, norm,
                                            self.token_alignment)
                    point_targets[r, shift:shift + n] = per_token.clamp(0, 1) * scales[r].repeat(2)
        lengths = torch.tensor([len(t) + 1 for t in token_ids], dtype=torch.long)
        return dict(image_index=torch.tensor(image_index, dtype=torch.long, device=device),
                    boxes=torch.stack(boxes).to(device) if boxes else torch.zeros(0, 4),
                    tasks=tasks, contexts=contexts,
                    decoder=(dec_in.to(device), targets.to(device), lengths.to(device)),
                    point_targets=point_targets.to(device),
                    scale=torch.stack(scales).to(device) if scales else torch.zeros(0, 2),
                    lengths=lengths, mask_rows=mask_rows, texts=texts)

    def _jitter(self, boxes: Tensor, size: Tuple[int, int]) -> Tensor:
        """Training prompts of dense captioning: ground-truth boxes moved by up to
        ``box_jitter`` of their size (the official model captions matched proposals)."""
        amount = self.train_cfg['box_jitter']
        if not amount or not len(boxes):
            return boxes
        wh = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
        moved = boxes + (torch.rand_like(boxes) * 2 - 1) * amount * wh
        height, width = size
        return torch.stack([moved[:, 0].clamp(0, width - 1), moved[:, 1].clamp(0, height - 1),
                            moved[:, 2].clamp(1, width), moved[:, 3].clamp(1, height)], 1)

    def _mask_loss(self, feats, inputs, samples, rows, points, prefix, hidden) -> dict:
        from .mask_head import sam_mask_loss
        row_ids = [r for r, _ in rows['mask_rows']]
        sample_ids = [i for _, i in rows['mask_rows']]
        keep = [k for k, i in enumerate(sample_ids)
                if 'masks' in samples[i].gt_instances and
                'mask' in self.task_losses[samples[i].task]]
        if not keep:
            return {}
        row_ids = [row_ids[k] for k in keep]
        sample_ids = [sample_ids[k] for k in keep]
        lengths = rows['lengths'].tolist()
        # The box from the state that predicts the end token, without gradient into it
        # (official: stop_gradient on the point boxes).
        end_points = torch.stack([points[r, lengths[r] - 1] for r in row_ids]).detach()
        boxes = corners_to_boxes(end_points)
        logits, iou = self._masks(feats, tuple(inputs.shape[-2:]), boxes, prefix[row_ids],
                                  [hidden[r, :lengths[r]] for r in row_ids],
                                  torch.tensor(sample_ids, device=inputs.device))
        targets = torch.stack([samples[i].gt_instances.masks.to_tensor(
            torch.float32, inputs.device)[0] for i in sample_ids])
        valid = torch.zeros_like(targets)
        for k, i in enumerate(sample_ids):
            height, width = samples[i].metainfo['img_shape'][:2]
            valid[k, :height, :width] = 1
        return sam_mask_loss(logits, iou, targets, valid)

    def _masks(self, feats, input_size, boxes, prefix, texts, image_index):
        grid = feats[self.mask_feature][image_index]
        corners = self.prompt_encoder.embed_boxes(boxes[:, None], input_size)[:, 0]
        pe = self.prompt_encoder.dense_pe(grid.shape[-2:])
        return self.mask_head(grid, pe, corners, self.prompt_encoder.no_mask_embedding,
                              prefix, texts)

    # ------------------------------------------------------------------ inference
    def predict(self, inputs: Tensor, data_samples, rescale: bool = True):
        feats = self.extract_feat(inputs, data_samples)
        groups: Dict[str, List[int]] = {}
        for i, sample in enumerate(data_samples):
            task = sample.get('task', 'narrative')
            if task not in TASKS:
                raise ValueError(f'PixelLLM cannot predict task {task!r}; choose one of '
                                 f'{", ".join(TASKS)}')
            groups.setdefault(task, []).append(i)
        for task, index in groups.items():
            samples = [data_samples[i] for i in index]
            sub = {k: v[index] for k, v in feats.items()}
            if task in ('narrative', 'captioning'):
                self._predict_captions(sub, inputs, samples, task)
            elif task == 'referring':
                self._predict_referring(sub, inputs, samples)
            elif task == 'loc_captioning':
                boxes = [getattr(s.gt_instances.bboxes, 'tensor', s.gt_instances.bboxes)[:1]
                         for s in samples]
                self._predict_box_captions(sub, inputs, samples, boxes, task)
            else:
                self._predict_dense(sub, inputs, samples)
        return data_samples

    def caption(self, feats: Dict[str, Tensor], input_size: Tuple[int, int],
                boxes: Tensor, image_index: Tensor, tasks: Sequence[str], trace: bool = True,
                beam_size: Optional[int] = None, max_new_tokens: Optional[int] = None,
                use_cache: Optional[bool] = None) -> dict:
        """Generate a caption per box, with its trace read from the same decoding pass.

        Returns ``ids`` (per caption its token ids), ``scores`` ``(M,)`` and, with ``trace``,
        ``points`` (per caption ``(T, 2, 2)`` input pixels as fractions of the image, one
        row per token).
        """
        cfg = self.test_cfg
        beam = beam_size or cfg['beam_size']
        use_cache = cfg['use_cache'] if use_cache is None else use_cache
        limit = max_new_tokens or self.max_caption_len
        state, _ = self.encode_prompts(feats, image_index, boxes, input_size, tasks,
                                       [None] * len(tasks))
        state = self.language_model.repeat(state, beam)
        lm = self.language_model

        def step(ids, cache):
            logits, hidden, cache = lm.decode(state, ids, cache, use_cache=use_cache)
            return StepOutput(logits[:, -1], cache, hidden[:, -1])

        start = torch.full((len(tasks), 1), lm.start_id, dtype=torch.long, device=boxes.device)
        # One step past the limit: a caption cut at the limit still gets the state that
        # reads its last token (official traces come from the states that read each word).
        out = generate(step, start, lm.end_id, limit + 1, beam_size=beam,
                       length_penalty=cfg['length_penalty'],
                       no_repeat_ngram_size=cfg['no_repeat_ngram_size'],
                       collect_hidden=trace)
        ids = [seq[:limit] for seq in out.sequences]
        result = dict(ids=ids, scores=out.scores)
        if trace:
            shift = 1 if self.trace_state == 'token' else 0
            states = [h[shift:shift + len(seq)] for h, seq in zip(out.hidden_states, ids)]
            points = self.trace_head(torch.cat(states)) if states else None  # one call
            result['points'] = list(points.split([len(s) for s in states])) if states else []
        return result

    def _predict_captions(self, feats, inputs, samples, task) -> None:
        input_size = tuple(inputs.shape[-2:])
        boxes = torch.stack([_whole_box(s, inputs.device) for s in samples])
        index = torch.arange(len(samples), device=inputs.device)
        out = self.caption(feats, input_size, boxes, index, [task] * len(samples))
        for k, sample in enumerate(samples):
            self._set_trace(sample, out['ids'][k], out['points'][k])
            if self.test_cfg['forced_trace'] and sample.get('gt_words') is not None:
                sample.forced_trace = self._forced_trace(feats, inputs, sample, k, task)

    def _set_trace(self, sample, ids: List[int], points: Tensor) -> None:
        """``pred_caption``, ``pred_points (T, 2, 2)`` and ``pred_trace`` (per word) in
        original pixels."""
        to_pixels = _to_original(sample)
        pixels = points * to_pixels
        sample.pred_caption = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
        sample.pred_points = pixels.detach()
        sample.pred_trace = _word_trace(self.tokenizer, ids, pixels.detach())

    def _forced_trace(self, feats, inputs, sample, k, task) -> List[dict]:
        """Per reference word its box, teacher-forced on the reference caption."""
        input_size = tuple(inputs.shape[-2:])
        box = _whole_box(sample, inputs.device)[None]
        state, _ = self.encode_prompts({n: f[k:k + 1] for n, f in feats.items()},
                                       torch.zeros(1, dtype=torch.long, device=inputs.device),
                                       box, input_size, [task], [None])
        enc = self.tokenizer(sample.text, add_special_tokens=False,
                             return_offsets_mapping=True)
        ids = enc['input_ids'][:self.max_caption_len - 1]
        dec = torch.tensor([[self.language_model.start_id] + ids], device=inputs.device)
        _, hidden, _ = self.language_model.decode(state, dec)
        shift = 1 if self.trace_state == 'token' else 0
        points = self.trace_head(hidden[0, shift:shift + len(ids)]) * _to_original(sample)
        words = sample.gt_words
        index, count = token_words(sample.text, enc['offset_mapping'][:len(ids)])
        per_word = []
        for w, word in enumerate(words):
            rows = [t for t, i in enumerate(index) if i == w] if count == len(words) else []
            # A word of several tokens: the mean of their boxes.
            box = (corners_to_boxes(points[rows]).mean(0).tolist() if rows
                   else [float('nan')] * 4)
            per_word.append(dict(word=word, box=box))
        return per_word

    def locate(self, feats, input_size, texts: Sequence[str], image_index: Tensor,
               boxes: Tensor) -> Tuple[Tensor, Tensor, Tensor, List[Tensor]]:
        """Referring localization: the box of each expression from the decoder state that
        reads its last token and so predicts the end token (teacher-forced ``[start,
        expression]``, as the official evaluation).

        Returns boxes ``(M, 4)`` in input pixels as fractions of the image (multiply by the
        image size), the prefix ``(M, P, D)``, ``lengths`` and the text states."""
        state, prefix = self.encode_prompts(feats, image_index, boxes, input_size,
                                            ['referring'] * len(texts), list(texts))
        ids = encode(self.tokenizer, texts, append_eos=False,
                     max_length=self.max_caption_len - 1)
        ids = [[self.language_model.start_id] + t for t in ids]
        dec, mask = _pad(ids, self.language_model.pad_id, boxes.device)
        _, hidden, _ = self.language_model.decode(state, dec)
        lengths = mask.sum(1)
        last = hidden[torch.arange(len(texts), device=boxes.device), lengths - 1]
        corners = self.trace_head(last)  # (M, 2, 2)
        return (corners_to_boxes(corners), prefix, lengths,
                [hidden[m, :lengths[m]] for m in range(len(texts))])

    def _predict_referring(self, feats, inputs, samples) -> None:
        input_size = tuple(inputs.shape[-2:])
        device = inputs.device
        boxes = torch.stack([_whole_box(s, device) for s in samples])
        index = torch.arange(len(samples), device=device)
        rel, prefix, lengths, texts = self.locate(feats, input_size, [s.text for s in samples],
                                                  index, boxes)
        scale = torch.stack([_image_size(s, device) for s in samples]).repeat(1, 2)
        input_boxes = rel * scale
        masks = None
        if self.mask_head is not None:
            logits, _ = self._masks(feats, input_size, input_boxes, prefix, texts, index)
        for k, sample in enumerate(samples):
            box = (input_boxes[k] / _scale_factor(sample, device).repeat(2))[None]
            pred = InstanceData(bboxes=box, scores=torch.ones(1, device=device),
                                labels=torch.zeros(1, dtype=torch.long, device=device))
            if self.mask_head is not None:
                masks = _mask_to_image(logits[k], input_size, sample.metainfo,
                                       self.test_cfg['mask_threshold'])
                pred.masks = masks[None]
            sample.pred_instances = pred

    def _predict_box_captions(self, feats, inputs, samples, boxes: List[Tensor],
                              task: str, scores: Optional[List[Tensor]] = None) -> None:
        """Caption each box (input pixels) of each sample -> ``pred_caption`` (first box)
        and ``pred_instances`` (``bboxes``, ``scores``, ``captions``) in original pixels."""
        device = inputs.device
        counts = [len(b) for b in boxes]
        flat = torch.cat(boxes).float().to(device) if sum(counts) else torch.zeros(0, 4)
        index = torch.repeat_interleave(torch.arange(len(samples), device=device),
                                        torch.tensor(counts, device=device))
        captions = []
        if len(flat):
            out = self.caption(feats, tuple(inputs.shape[-2:]), flat, index,
                               [task] * len(flat), trace=False)
            captions = [self.tokenizer.decode(i, skip_special_tokens=True).strip()
                        for i in out['ids']]
        start = 0
        for k, sample in enumerate(samples):
            mine = captions[start:start + counts[k]]
            box = flat[start:start + counts[k]] / _scale_factor(sample, device).repeat(2)
            start += counts[k]
            score = scores[k] if scores is not None else torch.ones(counts[k], device=device)
            sample.pred_instances = InstanceData(
                bboxes=box, scores=score, captions=mine,
                labels=torch.zeros(counts[k], dtype=torch.long, device=device))
            sample.pred_caption = mine[0] if mine else ''

    def _predict_dense(self, feats, inputs, samples) -> None:
        if self.proposal_head is None:
            raise ValueError('dense_captioning needs a proposal_head in the model config')
        pyramid = self.proposal_neck(feats[self.proposal_feature])
        found = self.proposal_head.predict(pyramid, samples, rescale=False)
        boxes, scores = [], []
        for result in found:
            keep = result.scores >= self.test_cfg['proposal_score_thr']
            order = result.scores[keep].argsort(descending=True)[:self.test_cfg['num_proposals']]
            boxes.append(result.bboxes[keep][order])
            scores.append(result.scores[keep][order])
        self._predict_box_captions(feats, inputs, samples, boxes, 'dense_captioning', scores)

    def _forward(self, inputs: Tensor, data_samples=None):
        """The prefix of the whole-image prompt: ``(B, num_tokens, D)``."""
        feats = self.extract_feat(inputs, data_samples)
        boxes = torch.tensor([[0.0, 0.0, inputs.shape[-1], inputs.shape[-2]]],
                             device=inputs.device).expand(len(inputs), -1)
        return self.prefixes(feats, torch.arange(len(inputs), device=inputs.device), boxes,
                             tuple(inputs.shape[-2:]))


def check_pretrained_files(image_encoder: dict, prompt_encoder: dict, language_model: dict,
                           tokenizer, mask_head: Optional[dict]) -> None:
    """Before anything is built: one ``FileNotFoundError`` naming every pretrained file the
    config names and the disk lacks (a paper-scale model loads ViT-L, SAM-H and Flan-T5-XL)."""
    import os

    from ..tokenizers import TOKENIZER_FILES
    from .language_models import CONFIG_FILE, WEIGHT_FILES

    def model_dir(path):
        found = [] if os.path.isfile(os.path.join(path, CONFIG_FILE)) else [
            os.path.join(path, CONFIG_FILE)]
        if not any(os.path.isfile(os.path.join(path, f)) for f in WEIGHT_FILES):
            found.append(os.path.join(path, WEIGHT_FILES[0]))
        return found

    missing = []
    for cfg in (image_encoder.get('encoders') or {}).values():
        backbone = cfg.get('backbone', {})
        path = backbone.get('pretrained')
        if not path or str(path).startswith('openseg://'):
            continue
        if 'SamViTEncoder' in str(backbone.get('type')):
            missing += model_dir(path)
        elif not os.path.isfile(path):
            missing.append(path)
    for cfg in (prompt_encoder, language_model, mask_head or {}):
        if cfg.get('pretrained'):
            missing += model_dir(cfg['pretrained'])
    if isinstance(tokenizer, dict) and 'path' in tokenizer:
        path = tokenizer['path']
        if not any(os.path.isfile(os.path.join(path, f)) for f in TOKENIZER_FILES):
            missing.append(os.path.join(path, TOKENIZER_FILES[0]))
    if missing:
        raise FileNotFoundError(
            f'PixelLLM: missing pretrained files: {", ".join(dict.fromkeys(missing))}; put '
            'each model there once (docs/plugins/pixelllm.md says where each comes from) or '
            'change the paths in the config')


def point_l1(points: Tensor, targets: Tensor) -> Tensor:
    """Mean absolute error of ``(M, T, 2, 2)`` points against ``(M, T, 4)`` box targets (the
    two corners), averaged over the 4 coordinates of each token, then over tokens that have a
    target (NaN rows: none; the official ``l1_nonzero``)."""
    valid = ~torch.isnan(targets).any(-1)
    if not valid.any():
        return points.sum() * 0.0
    corners = boxes_to_corners(targets[valid])
    return (points[valid] - corners).abs().mean((-2, -1)).mean()


def _pad(rows: List[List[int]], pad_id: int, device) -> Tuple[Tensor, Tensor]:
    length = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), max(length, 1)), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, :len(row)] = True
    return ids.to(device), mask.to(device)


def _image_size(sample, device) -> Tensor:
    height, width = sample.metainfo['img_shape'][:2]
    return torch.tensor([float(width), float(height)], device=device)


def _whole_box(sample, device) -> Tensor:
    """The default prompt: the whole (unpadded) image, ``(0, 0, w, h)`` input pixels."""
    width, height = _image_size(sample, device).tolist()
    return torch.tensor([0.0, 0.0, width, height], device=device)


def _scale_factor(sample, device) -> Tensor:
    sx, sy = sample.metainfo.get('scale_factor', (1.0, 1.0))
    return torch.tensor([float(sx), float(sy)], device=device)


def _to_original(sample) -> Tensor:
    """Multiplier of ``(x, y)`` fractions of the input image -> original pixels."""
    height, width = sample.metainfo.get('ori_shape', sample.metainfo['img_shape'])[:2]
    return torch.tensor([float(width), float(height)])


def _word_trace(tokenizer, ids: List[int], points: Tensor) -> List[dict]:
    """Group tokens into the words of the decoded caption: each word's point is the mean of
    its tokens' display points (the mean of each token's two corners)."""
    text = tokenizer.decode(ids, skip_special_tokens=True).strip()
    if not ids:
        return []
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    display = points.mean(-2).cpu()  # (T, 2)
    if len(enc['input_ids']) != len(ids):  # the text does not re-encode to the same tokens
        pieces = [(tokenizer.decode([i], skip_special_tokens=True).strip(), t)
                  for t, i in enumerate(ids)]
        return [dict(word=w, point=display[t].tolist()) for w, t in pieces if w]
    import re
    spans = [m.span() for m in re.finditer(r'\S+', text)]
    words = []
    for start, end in spans:
        rows = [t for t, (s, _) in enumerate(enc['offset_mapping']) if start <= s < end]
        if rows:
            words.append(dict(word=text[start:end], point=display[rows].mean(0).tolist()))
    return words


def _mask_to_image(logits: Tensor, input_size, meta: dict, threshold: float) -> Tensor:
    """``(h, w)`` mask logits -> ``(H_ori, W_ori)`` bool (padding cropped, resized)."""
    full = F.interpolate(logits[None, None], size=input_size, mode='bilinear',
                         align_corners=False)
    height, width = meta['img_shape'][:2]
    full = full[..., :height, :width]
    if tuple(meta['ori_shape'][:2]) != (height, width):
        full = F.interpolate(full, size=meta['ori_shape'][:2], mode='bilinear',
                             align_corners=False)
    return full[0, 0] > threshold
