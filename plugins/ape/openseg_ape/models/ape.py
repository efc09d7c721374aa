"""APE: a DETA-style detector that scores, boxes and segments thousands of prompts at once."""
import copy
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmcv.ops import MultiScaleDeformableAttention
from mmdet.models.detectors import DeformableDETR
from mmdet.models.layers import SinePositionalEncoding
from mmdet.models.layers.transformer import DeformableDetrTransformerDecoder, inverse_sigmoid
from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmengine.structures import InstanceData
from torch import Tensor, nn
from torchvision.ops import batched_nms

from openseg_core.models.base import OpenSegModel
from openseg_core.models.detection import VisionLanguageAlign
from openseg_core.models.interfaces import implements
from openseg_core.models.layers import convert_fast_layers

from ..registry import MODELS
from .postprocess import APEPostProcessor
from .prompts import ROUTINGS, PromptBatch, mixed_prompts, request_order

#: How a prompt's tokens become its embedding: the end-of-text feature (CLIP) or their mean
#: (APE's BERT / Llama-2 variants, the paper's Eq. 1).
REDUCTIONS = ('eot', 'average')
#: Sample tasks whose prompts are their own sentences (``metainfo['phrases']`` / ``text``).
SENTENCE_TASKS = ('grounding', 'referring')


@dataclass
class APEOutput:
    """Raw outputs of one forward pass (``L`` decoder layers, ``N`` encoder positions)."""
    #: ``L`` x ``(B, Q, K)`` prompt logits per decoder layer.
    cls_logits: List[Tensor]
    #: ``L`` x ``(B, Q, 4)`` boxes, normalised ``cx, cy, w, h``.
    boxes: List[Tensor]
    #: ``(B, Q, H/4, W/4)`` mask logits of the last layer.
    mask_logits: Tensor
    #: ``(B, Q, 4)`` the decoder's initial reference boxes (the selected proposals).
    init_reference: Tensor
    #: ``(B, N, 1)`` encoder objectness logits.
    enc_cls_logits: Tensor
    #: ``(B, N, 4)`` encoder proposal boxes.
    enc_boxes: Tensor
    #: ``(B, N, 4)`` the fixed anchors the proposals refine.
    anchors: Tensor
    #: ``(K, D)`` or, when sentences were fused, ``(B, K, D)``: the prompt embeddings the
    #: classifiers scored (vocabulary prompts as encoded, sentences as fused).
    prompt_embeds: Tensor


def _mlp(in_dims: int, hidden_dims: int, out_dims: int, num_layers: int = 3) -> nn.Sequential:
    """DETR's box/mask MLP: Linear-ReLU-...-Linear."""
    layers = []
    for i in range(num_layers):
        layers.append(nn.Linear(in_dims if i == 0 else hidden_dims,
                                out_dims if i == num_layers - 1 else hidden_dims))
        if i < num_layers - 1:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


@implements('Model', example='ape::ape_tiny_shapes.py', inputs=dict(
    tasks=('panoptic', 'referring'), size=64))
@MODELS.register_module()
class APE(OpenSegModel):
    """APE (Shen et al., CVPR 2024) on mmdet's Deformable-DETR parts, as the official code
    (shenyunhang/APE, ``DeformableDETRSegmVL``) builds it:

    backbone -> ChannelMapper (levels at strides 4..64) -> deformable encoder with a
    vision-language fusion block before each layer -> DETA two-stage proposals -> deformable
    decoder with box refinement -> per layer a GLIP classifier against the prompt embeddings
    and a box MLP; a MaskDINO mask branch (stride-4 backbone map + the encoder's stride-4
    memory) gives the last layer's masks.

    **Prompts.** Each prompt is one string embedded alone (the text encoder's end-of-text
    feature, or the mean of its tokens with ``prompt_reduce='average'``). Vocabulary prompts
    (the model's vocabulary, single words of a request) are embedded once and cached; they
    meet the image in the fusion only as one fixed all-zero language token and keep their
    embeddings. Sentence prompts (phrases, referring expressions, request entries with a
    space) are fused with the image and their updated embeddings classify.

    **Routing.** ``routing='per_prompt'`` (openseg) routes each prompt by its kind within
    one pass: the fusion's language tokens are the zero token (when any vocabulary prompt is
    present) and the sentences, so 10,000 words and 10 sentences cost a fusion of 11 tokens.
    ``'fuse_all'`` is the official inference rule: once any prompt is a sentence, every
    prompt is a language token of the fusion and is updated.

    **Training** (``loss``): samples of task ``generic`` are scored against the vocabulary;
    ``grounding`` samples (``metainfo['phrases']``, one label per phrase) and ``referring``
    samples (``text``) against every sentence of the batch plus negatives from a history
    bank of past sentences (APE's per-dataset bank; one bank here). Stuff regions must
    already be instances (``ape.StuffToInstances`` in the pipeline).

    Args:
        backbone: image backbone config; its maps feed ``neck``.
        neck: mmdet ``ChannelMapper`` giving ``num_feature_levels`` maps of ``C`` channels,
            the first at stride 4.
        text_encoder: the core ``OpenCLIPTextEncoder`` (``templates=('{}',)``: APE embeds
            the bare prompt).
        encoder: ``ape.VLDeformableEncoder`` (its ``fusion_cfg`` sets the fusion block).
        decoder: mmdet ``DeformableDetrTransformerDecoder`` config.
        positional_encoding: mmdet ``SinePositionalEncoding`` config.
        num_queries: decoder queries (APE: 900).
        num_feature_levels: levels of the deformable attention (APE: 5, strides 4..64).
        prompt_reduce: ``'eot'`` or ``'average'``.
        routing: ``'per_prompt'`` or ``'fuse_all'`` (see above).
        negative_bank_size: sentences per training batch, the batch's own padded with past
            ones (APE: 256); 0 switches the bank off.
        mask_in_index: the backbone map (stride 4) of the mask branch.
        mask_in_channels: its channels.
        mask_encode_level: the encoder level added to it (0: stride 4).
        mask_norm_groups: GroupNorm groups of the mask branch (detectron2's GN: 32).
        proposal_nms: DETA's proposal selection: per level the ``proposal_pre_nms_topk`` best,
            NMS at ``proposal_nms_thr``, at most ``num_queries / levels`` per level; else the
            plain top-k.
        proposal_ambiguous: extra encoder heads; per position the most confident head's
            proposal is used (APE-D: 1).
        criterion: ``ape.APECriterion``.
        test_cfg: ``ape.APEPostProcessor`` arguments.
    """

    def __init__(self, backbone: dict, neck: dict, text_encoder: dict, encoder: dict,
                 decoder: dict, positional_encoding: Optional[dict] = None,
                 num_queries: int = 900, num_feature_levels: int = 5,
                 prompt_reduce: str = 'eot', routing: str = 'per_prompt',
                 negative_bank_size: int = 256, mask_in_index: int = 0,
                 mask_in_channels: int = 256, mask_encode_level: int = 0,
                 mask_norm_groups: int = 32, proposal_nms: bool = True,
                 proposal_pre_nms_topk: int = 1000, proposal_nms_thr: float = 0.9,
                 proposal_ambiguous: int = 0, criterion: Optional[dict] = None,
                 test_cfg: Optional[dict] = None, thing_classes: Sequence[str] = (),
                 stuff_classes: Sequence[str] = (), data_preprocessor: Optional[dict] = None,
                 init_cfg=None):
        super().__init__(thing_classes=thing_classes, stuff_classes=stuff_classes,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if prompt_reduce not in REDUCTIONS:
            raise ValueError(f'prompt_reduce must be one of {REDUCTIONS}, not {prompt_reduce!r}')
        if routing not in ROUTINGS:
            raise ValueError(f'routing must be one of {ROUTINGS}, not {routing!r}')
        self.backbone = MODELS.build(backbone)
        self.neck = MODELS.build(neck)
        self.text_encoder = MODELS.build(text_encoder)
        self.encoder = MODELS.build(encoder)
        self.decoder = DeformableDetrTransformerDecoder(**decoder)
        embed_dims = self.embed_dims = self.encoder.embed_dims
        self.positional_encoding = SinePositionalEncoding(
            **(positional_encoding or dict(num_feats=embed_dims // 2, normalize=True,
                                           offset=-0.5)))
        self.num_queries, self.num_feature_levels = num_queries, num_feature_levels
        self.prompt_reduce, self.routing = prompt_reduce, routing
        prompt_dims = self.prompt_dims = self.text_encoder.embed_dim

        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, embed_dims))
        # Two-stage proposals (mmdet's names; DETA adds pix_trans: the selected positions'
        # features, not only their boxes, initialise the queries).
        self.memory_trans_fc = nn.Linear(embed_dims, embed_dims)
        self.memory_trans_norm = nn.LayerNorm(embed_dims)
        self.pos_trans_fc = nn.Linear(embed_dims * 2, embed_dims * 2)
        self.pos_trans_norm = nn.LayerNorm(embed_dims * 2)
        self.pix_trans_fc = nn.Linear(embed_dims, embed_dims)
        self.pix_trans_norm = nn.LayerNorm(embed_dims)
        self.proposal_nms, self.proposal_pre_nms_topk = proposal_nms, proposal_pre_nms_topk
        self.proposal_nms_thr = proposal_nms_thr

        # Heads: one classifier and box MLP per decoder layer, then the encoder's (binary).
        num_layers = self.decoder.num_layers
        prior = -math.log((1 - 0.01) / 0.01)
        enc_cls = nn.Linear(embed_dims, 1)
        nn.init.constant_(enc_cls.bias, prior)
        self.cls_branches = nn.ModuleList(
            [VisionLanguageAlign(embed_dims, prompt_dims) for _ in range(num_layers)]
            + [enc_cls])
        reg = _mlp(embed_dims, embed_dims, 4)
        nn.init.zeros_(reg[-1].weight)
        nn.init.zeros_(reg[-1].bias)
        self.reg_branches = nn.ModuleList([copy.deepcopy(reg) for _ in range(num_layers + 1)])
        self.cls_branches_ambiguous = nn.ModuleList(
            [copy.deepcopy(enc_cls) for _ in range(proposal_ambiguous)])
        self.reg_branches_ambiguous = nn.ModuleList(
            [copy.deepcopy(reg) for _ in range(proposal_ambiguous)])

        # Vocabulary prompts meet the image as this one fixed token (APE's "zero" fusion
        # feature: not trained, not saved).
        self.register_buffer('vocabulary_token', torch.zeros(1, prompt_dims), persistent=False)
        self.negative_bank_size = negative_bank_size
        self.register_buffer('sentence_bank', torch.zeros(negative_bank_size, prompt_dims),
                             persistent=False)
        self._average_cache: Dict[tuple, Tensor] = {}

        # MaskDINO's mask branch.
        norm = dict(type='GN', num_groups=mask_norm_groups)
        self.mask_in_index, self.mask_encode_level = mask_in_index, mask_encode_level
        self.lateral_conv = ConvModule(mask_in_channels, embed_dims, 1, bias=False,
                                       norm_cfg=norm, act_cfg=None)
        self.output_conv = ConvModule(embed_dims, embed_dims, 3, padding=1, bias=False,
                                      norm_cfg=norm, act_cfg=dict(type='ReLU'))
        self.mask_conv = nn.Conv2d(embed_dims, embed_dims, 1, bias=False)
        for conv in (self.lateral_conv.conv, self.output_conv.conv, self.mask_conv):
            nn.init.kaiming_uniform_(conv.weight, a=1)  # detectron2's c2_xavier_fill
        self.mask_embed = _mlp(embed_dims, embed_dims, embed_dims)

        self.criterion = MODELS.build(criterion) if criterion is not None else None
        self.postprocessor = APEPostProcessor(**(test_cfg or {}))
        # The core's CPU paths for mmcv's deformable attention, torch's attention inside
        # mmcv's modules and linear layers: the same outputs to float rounding.
        convert_fast_layers(self)

    def init_weights(self) -> None:
        """Deformable DETR's initialisation of the transformer (xavier, the deformable
        attention's own scheme, normal level embeddings), as the official code does."""
        super().init_weights()
        for coder in (self.encoder, self.decoder):
            for p in coder.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MultiScaleDeformableAttention):
                m.init_weights()
        for fc in (self.memory_trans_fc, self.pos_trans_fc, self.pix_trans_fc):
            nn.init.xavier_uniform_(fc.weight)
        nn.init.normal_(self.level_embed)

    # ------------------------------------------------------------------ prompts
    def _embed_texts(self, texts: Sequence[str]) -> Tensor:
        """``N`` strings -> ``(N, D)`` embeddings (end-of-text feature or token mean)."""
        embeds = []
        for start in range(0, len(texts), 1024):
            out = self.text_encoder(list(texts[start:start + 1024]))
            if self.prompt_reduce == 'eot':
                embeds.append(out.pooled)
            else:
                mask = out.mask[..., None].to(out.token_feats.dtype)
                mean = (out.token_feats * mask).sum(1) / mask.sum(1)
                embeds.append(self.text_encoder.project(mean))
        return torch.cat(embeds)

    def embed_vocabulary(self, names: Sequence[str]) -> Tensor:
        """``(K, D)`` embeddings of vocabulary prompts, cached while the text encoder is
        frozen (the core encoder's cache; its rows are unit vectors, which changes nothing
        downstream under ``routing='per_prompt'``: the classifier normalises prompts and the
        fusion never sees them; under ``'fuse_all'`` the fusion reads the unit rows)."""
        if self.prompt_reduce == 'eot':
            return self.text_encoder.encode_vocabulary(list(names))
        key = tuple(names)
        cacheable = self.text_encoder.frozen or not torch.is_grad_enabled()
        if cacheable and key in self._average_cache:
            return self._average_cache[key]
        prompts = [t.format(name) for name in names for t in self.text_encoder.templates]
        embeds = F.normalize(self._embed_texts(prompts), dim=-1)
        embeds = F.normalize(embeds.view(len(names), -1, embeds.shape[-1]).mean(1), dim=-1)
        if cacheable:
            self._average_cache[key] = embeds.detach()
        return embeds

    def embed_sentences(self, sentences: Sequence[str]) -> Tensor:
        """``(S, D)`` embeddings of sentence prompts (not cached: free text)."""
        if not sentences:
            return self.vocabulary_token.new_zeros(0, self.prompt_dims)
        return self._embed_texts(sentences)

    def _language_tokens(self, prompts: PromptBatch, vocab: Tensor, sentences: Tensor,
                         sees: Tensor) -> Tuple[Tensor, Optional[Tensor], bool]:
        """The fusion's language input: ``(B, T, D)`` tokens, ``(B, T)`` hidden mask (or
        ``None``) and whether every prompt is a token (``fuse_all``)."""
        batch = sees.shape[0]
        num_vocab = prompts.num_vocabulary
        if self.routing == 'fuse_all' and len(sentences):
            tokens = torch.cat([vocab, sentences])
            hidden = ~sees
            return (tokens[None].expand(batch, -1, -1), hidden if hidden.any() else None,
                    True)
        # The zero token stands for the vocabulary; an image that sees neither a vocabulary
        # prompt nor a sentence keeps it too (APE's vocabulary-only mode).
        sees_vocab = sees[:, :num_vocab].any(1) if num_vocab else sees.new_zeros(batch)
        sees_sentence = sees[:, num_vocab:]
        zero_visible = sees_vocab | ~sees_sentence.any(1)
        tokens = torch.cat([self.vocabulary_token.to(sentences.dtype), sentences])
        hidden = torch.cat([~zero_visible[:, None], ~sees_sentence], dim=1)
        return tokens[None].expand(batch, -1, -1), hidden if hidden.any() else None, False

    # ------------------------------------------------------------------ network
    def extract_feat(self, inputs: Tensor) -> Tuple[Tuple[Tensor, ...], Tuple[Tensor, ...]]:
        """``(B, 3, H, W)`` -> backbone maps and the neck's ``num_feature_levels`` maps."""
        feats = self.backbone(inputs)
        return feats, self.neck(feats)

    def _flatten_levels(self, maps: Sequence[Tensor], batch_img_metas: List[dict]):
        """Deformable DETR's multi-level input: flattened features, positions (+ level
        embeddings), padding mask, shapes, level starts and valid ratios."""
        batch = maps[0].shape[0]
        pad_h, pad_w = batch_img_metas[0]['batch_input_shape']
        img_masks = maps[0].new_ones((batch, pad_h, pad_w))
        for i, meta in enumerate(batch_img_metas):
            height, width = meta['img_shape'][:2]
            img_masks[i, :height, :width] = 0
        feats, masks, positions, shapes, ratios = [], [], [], [], []
        for level, feat in enumerate(maps):
            mask = F.interpolate(img_masks[None], size=feat.shape[-2:]).to(torch.bool)[0]
            pos = self.positional_encoding(mask)
            feats.append(feat.flatten(2).transpose(1, 2))
            masks.append(mask.flatten(1))
            positions.append(pos.flatten(2).transpose(1, 2) + self.level_embed[level])
            shapes.append(feat.shape[-2:])
            ratios.append(DeformableDETR.get_valid_ratio(mask))
        spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=maps[0].device)
        level_start_index = torch.cat((spatial_shapes.new_zeros((1,)),
                                       spatial_shapes.prod(1).cumsum(0)[:-1]))
        return (torch.cat(feats, 1), torch.cat(positions, 1), torch.cat(masks, 1),
                spatial_shapes, level_start_index, torch.stack(ratios, 1))

    def _select_proposals(self, logits: Tensor, coords_unact: Tensor,
                          spatial_shapes: Tensor) -> Tensor:
        """``(B, N)`` objectness, ``(B, N, 4)`` proposals -> ``(B, Q)`` selected positions."""
        if not self.proposal_nms:
            return logits.topk(self.num_queries, dim=1)[1]
        level_ids = torch.cat([torch.full((int(h * w),), lvl, device=logits.device)
                               for lvl, (h, w) in enumerate(spatial_shapes)])
        boxes = bbox_cxcywh_to_xyxy(coords_unact.sigmoid()).clamp(0, 1)
        num_levels, topk = len(spatial_shapes), self.num_queries
        selected = []
        for logit, box in zip(logits, boxes):
            pre = torch.cat([
                (logit.sigmoid() * (level_ids == lvl)).topk(
                    min(self.proposal_pre_nms_topk, len(logit)))[1]
                for lvl in range(num_levels)])
            keep = pre[batched_nms(box[pre].float(), logit[pre].float(), level_ids[pre],
                                   self.proposal_nms_thr)]
            if len(keep) < topk:
                # Too few survive NMS: the plain top-k, as the official code falls back.
                selected.append(logit.topk(topk)[1])
                continue
            # At most topk / levels per level, in score order; the rest filled in order.
            per_level = level_ids[keep][None] == torch.arange(num_levels,
                                                              device=logit.device)[:, None]
            chosen = (per_level & (per_level.cumsum(1) <= topk // num_levels)).any(0)
            missing = topk - int(chosen.sum())
            if missing > 0:
                chosen[(~chosen).nonzero()[:missing, 0]] = True
            selected.append(keep[chosen])
        return torch.stack(selected)

    def mask_features(self, memory: Tensor, backbone_map: Tensor,
                      spatial_shapes: Tensor) -> Tensor:
        """MaskDINO's mask features ``(B, C, H/4, W/4)``: the stride-4 backbone map
        (1x1 conv + GN) plus the upsampled encoder memory of ``mask_encode_level``, then
        3x3 conv + GN + ReLU and a 1x1 conv."""
        sizes = spatial_shapes.prod(1)
        start = int(sizes[:self.mask_encode_level].sum())
        height, width = (int(s) for s in spatial_shapes[self.mask_encode_level])
        level = memory[:, start:start + height * width].transpose(1, 2).reshape(
            memory.shape[0], -1, height, width)
        x = self.lateral_conv(backbone_map)
        x = x + F.interpolate(level, size=x.shape[-2:], mode='bilinear', align_corners=False)
        return self.mask_conv(self.output_conv(x))

    def forward_prompts(self, feats, prompts: PromptBatch,
                        batch_img_metas: List[dict]) -> APEOutput:
        """Run the detector on extracted features for a batch of prompts."""
        backbone_maps, maps = feats
        batch = maps[0].shape[0]
        device = maps[0].device
        sees = prompts.image_sees(batch, device)
        vocab = (self.embed_vocabulary(prompts.vocabulary) if prompts.num_vocabulary
                 else maps[0].new_zeros(0, self.prompt_dims))
        sentences = (prompts.sentence_embeds if prompts.sentence_embeds is not None
                     else self.embed_sentences(prompts.sentences))
        if prompts.extra_sentence_embeds is not None:
            sentences = torch.cat([sentences, prompts.extra_sentence_embeds.to(sentences)])
        lang, lang_hidden, fuse_all = self._language_tokens(prompts, vocab, sentences, sees)

        query, query_pos, mask_flat, spatial_shapes, level_start, valid_ratios = \
            self._flatten_levels(maps, batch_img_metas)
        memory, lang = self.encoder(query, query_pos, mask_flat, spatial_shapes, level_start,
                                    valid_ratios, lang, lang_hidden)
        if fuse_all:
            prompt_embeds = lang
        elif len(sentences):
            prompt_embeds = torch.cat([vocab[None].expand(batch, -1, -1), lang[:, 1:]], dim=1)
        else:
            prompt_embeds = vocab

        # Two-stage proposals (DETA).
        output_memory, output_proposals = DeformableDETR.gen_encoder_output_proposals(
            self, memory, mask_flat, spatial_shapes)
        num_layers = self.decoder.num_layers
        enc_cls = self.cls_branches[num_layers](output_memory)
        enc_coords = self.reg_branches[num_layers](output_memory) + output_proposals
        if len(self.cls_branches_ambiguous):
            all_cls = torch.stack([enc_cls] + [b(output_memory)
                                               for b in self.cls_branches_ambiguous], 1)
            all_coords = torch.stack([enc_coords] + [b(output_memory) + output_proposals
                                                     for b in self.reg_branches_ambiguous], 1)
            best = all_cls.argmax(1, keepdim=True)
            enc_cls = all_cls.gather(1, best)[:, 0]
            enc_coords = all_coords.gather(1, best.expand(-1, -1, -1, 4))[:, 0]
        selected = self._select_proposals(enc_cls[..., 0], enc_coords, spatial_shapes)
        topk_coords = enc_coords.gather(1, selected[..., None].expand(-1, -1, 4)).detach()
        reference = topk_coords.sigmoid()
        pos_embed = DeformableDETR.get_proposal_pos_embed(
            topk_coords, num_pos_feats=self.embed_dims // 2)
        query_pos, query = self.pos_trans_norm(self.pos_trans_fc(pos_embed)).split(
            self.embed_dims, dim=2)
        topk_feats = output_memory.gather(
            1, selected[..., None].expand(-1, -1, self.embed_dims)).detach()
        query = query + self.pix_trans_norm(self.pix_trans_fc(topk_feats))

        states, references = self.decoder(
            query=query, query_pos=query_pos, value=memory, key_padding_mask=mask_flat,
            reference_points=reference, spatial_shapes=spatial_shapes,
            level_start_index=level_start, valid_ratios=valid_ratios,
            reg_branches=self.reg_branches)
        cls_logits, boxes = [], []
        for layer, state in enumerate(states):
            ref = reference if layer == 0 else references[layer - 1]
            cls_logits.append(self.cls_branches[layer](state, prompt_embeds))
            boxes.append((self.reg_branches[layer](state) + inverse_sigmoid(ref)).sigmoid())
        # Only the last layer's masks are trained and predicted: the others are not computed.
        mask_feats = self.mask_features(memory, backbone_maps[self.mask_in_index],
                                        spatial_shapes)
        mask_logits = torch.einsum('bqc,bchw->bqhw', self.mask_embed(states[-1]), mask_feats)
        return APEOutput(cls_logits, boxes, mask_logits, reference, enc_cls,
                         enc_coords.sigmoid(), output_proposals.sigmoid(), prompt_embeds)

    # ------------------------------------------------------------------ training
    def _training_prompts(self, samples: SampleList):
        """The batch's prompts and, per sample, the targets' columns and the columns it is
        scored against (``(B, K)``)."""
        tasks = [s.get('task', 'generic') for s in samples]
        vocabulary = (self.require_vocabulary().names
                      if any(t not in SENTENCE_TASKS for t in tasks) else ())
        sentences, offsets = [], []
        for sample, task in zip(samples, tasks):
            offsets.append(len(vocabulary) + len(sentences))
            if task == 'grounding':
                sentences.extend(sample.metainfo['phrases'])
            elif task == 'referring':
                sentences.append(sample.text)
        own = self.embed_sentences(sentences)
        extra = None
        if sentences and self.negative_bank_size:
            # APE's bank: the batch's sentences, then the newest past ones, up to its size;
            # the bank keeps the first of them.
            combined = torch.cat([own.detach(), self.sentence_bank.to(own)])
            extra = combined[len(own):max(len(own), self.negative_bank_size)]
            self.sentence_bank.copy_(combined[:self.negative_bank_size])
        prompts = PromptBatch(vocabulary, sentences, extra_sentence_embeds=extra,
                              sentence_embeds=own)
        num_vocab, total = len(vocabulary), len(prompts)
        visible = torch.zeros(len(samples), total, dtype=torch.bool)
        labels = []
        for i, (sample, task) in enumerate(zip(samples, tasks)):
            gt = sample.gt_instances.labels
            if task in SENTENCE_TASKS:
                visible[i, num_vocab:] = True
                labels.append(gt + offsets[i])
            else:
                if len(gt) and int(gt.max()) >= num_vocab:
                    raise ValueError(f'a {task} sample has label {int(gt.max())} but the '
                                     f'vocabulary has {num_vocab} classes')
                visible[i, :num_vocab] = True
                labels.append(gt)
        prompts.visible = visible
        return prompts, labels, tasks

    def loss(self, inputs: Tensor, data_samples: SampleList) -> Dict[str, Tensor]:
        if self.criterion is None:
            raise ValueError('this APE model has no criterion: give one in the config to train')
        prompts, labels, tasks = self._training_prompts(data_samples)
        metas = [s.metainfo for s in data_samples]
        out = self.forward_prompts(self.extract_feat(inputs), prompts, metas)
        return self.criterion(out, data_samples, labels, prompts.image_sees(
            len(data_samples), inputs.device), tasks, metas,
            vocabulary=prompts.vocabulary)

    # ------------------------------------------------------------------ inference
    def predict(self, inputs: Tensor, data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Samples with ``text`` (task ``referring``) get their expression's best box and
        mask; the others the instance / semantic / panoptic outputs over the vocabulary."""
        refer = [s.get('task', 'referring' if s.get('text') is not None else None)
                 == 'referring' for s in data_samples]
        vocabulary = self.require_vocabulary().names if not all(refer) else ()
        sentences = [s.text for s, r in zip(data_samples, refer) if r]
        visible = torch.zeros(len(data_samples), len(vocabulary) + len(sentences),
                              dtype=torch.bool)
        column = len(vocabulary)
        for i, r in enumerate(refer):
            if r:
                visible[i, column] = True
                column += 1
            else:
                visible[i, :len(vocabulary)] = True
        prompts = PromptBatch(vocabulary, sentences, visible=visible)
        metas = [s.metainfo for s in data_samples]
        out = self.forward_prompts(self.extract_feat(inputs), prompts, metas)
        results, column = [], len(vocabulary)
        for i, (r, meta) in enumerate(zip(refer, metas)):
            if r:
                results.append(dict(pred_instances=self.postprocessor.referring(
                    out, i, column, meta, rescale)))
                column += 1
            else:
                results.append(self.postprocessor.vocabulary(
                    out, i, self.require_vocabulary(), meta, rescale))
        return self.add_pred_to_datasample(data_samples, results)

    def detect(self, inputs: Tensor, data_samples: SampleList,
               prompts: Sequence[str]) -> List[InstanceData]:
        """Detect and segment a request of words and sentences mixed (one pass for the
        batch): per image the best (query, prompt) pairs, ``labels`` indexing ``prompts``."""
        if not prompts:
            raise ValueError('no prompts: give at least one word or sentence')
        batch = mixed_prompts(prompts)
        metas = [s.metainfo for s in data_samples]
        out = self.forward_prompts(self.extract_feat(inputs), batch, metas)
        order = request_order(prompts).to(inputs.device)
        results = []
        for i, meta in enumerate(metas):
            instances = self.postprocessor.instances(out, i, order, meta, rescale=True)
            results.append(instances)
        return results

    def _forward(self, inputs: Tensor, data_samples: Optional[SampleList] = None) -> APEOutput:
        vocabulary = self.require_vocabulary().names
        batch = inputs.shape[0]
        metas = ([s.metainfo for s in data_samples] if data_samples is not None else
                 [dict(batch_input_shape=inputs.shape[-2:], img_shape=inputs.shape[-2:])]
                 * batch)
        return self.forward_prompts(self.extract_feat(inputs), PromptBatch(vocabulary, ()),
                                    metas)
