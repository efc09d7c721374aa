"""ODISE: open-vocabulary panoptic segmentation on frozen diffusion features, trained with
category labels (:class:`CategoryODISE`) or image captions (:class:`CaptionODISE`)."""
import contextlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmdet.structures import SampleList
from torch import Tensor

from openseg_core.models import MaskClassificationModel, MaskClassificationOutput, Vocabulary
from openseg_core.models.interfaces import implements
from openseg_core.models.mask_classification import panoptic_targets
from openseg_core.registry import MODELS as CORE_MODELS

from ...registry import MODELS
from ...text import NounPhraseExtractor
from ..diffusion.implicit_captioner import CLIP_MEAN, CLIP_STD
from ..heads.synonyms import merge_synonyms, split_synonyms
from ..lean import make_lean
from ..local_files import check_pretrained

#: Key prefixes only official checkpoints have (openseg's differ: see the converter).
OFFICIAL_PREFIXES = ('sem_seg_head.', 'backbone.feature_extractor.', 'category_head.')


class ODISE(MaskClassificationModel):
    """The parts both supervisions share: diffusion backbone -> MSDeformAttn pixel decoder ->
    masked-attention query decoder, a pooled mask embedding per prediction, and at inference
    the geometric ensemble with CLIP's view of each mask.

    Args:
        backbone: :class:`~..backbones.DiffusionBackbone` (input in ``[0, 1]``: the data
            preprocessor's ``mean=0, std=255``, as the official model).
        pixel_decoder, query_decoder, criterion, postprocessor: the core's
            mask-classification parts (mmdet ``MSDeformAttnPixelDecoder``,
            ``MaskedAttentionQueryDecoder``, ``MaskClassificationCriterion``,
            ``MaskPostProcessor``).
        text_encoder: the CLIP text tower (core ``OpenCLIPTextEncoder``, frozen), the same
            CLIP as the image towers.
        head: the classifier the criterion trains (``odise.CategoryHead`` /
            ``odise.ObjectnessHead``).
        mask_embed: :class:`~..heads.PooledMaskEmbed`.
        region_ensemble: optional ``odise.SynonymRegionEnsemble`` (or the core's
            ``CLIPRegionEnsemble``): combine with CLIP's classification of each mask.
        region_encoder: the CLIP image tower of the ensemble; ``None`` shares the implicit
            captioner's (ODISE's two are the same CLIP: one copy in memory).
        clip_template: prompt of class names for the CLIP head (official ``'a photo of a
            {}.'``).
        synonym_separator: splits a class name into synonyms, scored separately and merged
            by the maximum (``'dog, puppy'``); ``None`` keeps names whole.
        test_cfg: ``inference_mode`` (run ``predict`` under ``torch.inference_mode``);
            ``lean``: ``None``, or the dtype of the frozen parts of the lean memory mode
            (``'float16'`` on a GPU, ``'bfloat16'`` on a CPU), applied once the model is
            built (:func:`~..lean.make_lean`; implies ``inference_mode``; checkpoints of
            the model's trainable weights load as before).
    """

    def __init__(self, backbone: dict, pixel_decoder: dict, query_decoder: dict,
                 text_encoder: dict, head: dict, criterion: dict, postprocessor: dict,
                 mask_embed: dict, region_ensemble: Optional[dict] = None,
                 region_encoder: Optional[dict] = None,
                 clip_template: str = 'a photo of a {}.', synonym_separator: Optional[str] = ',',
                 test_cfg: Optional[dict] = None, thing_classes: Sequence[str] = (),
                 stuff_classes: Sequence[str] = (), data_preprocessor: Optional[dict] = None,
                 init_cfg=None):
        # Every missing file in one line, before anything heavy is built.
        check_pretrained(dict(backbone=backbone, text_encoder=text_encoder,
                              region_encoder=region_encoder))
        super().__init__(backbone, pixel_decoder, query_decoder, text_encoder, head, criterion,
                         postprocessor, thing_classes=thing_classes,
                         stuff_classes=stuff_classes, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.mask_embed = MODELS.build(mask_embed)
        self.clip_template = clip_template
        self.synonym_separator = synonym_separator
        self.test_cfg = dict(dict(inference_mode=False, lean=None), **(test_cfg or {}))
        self.region_ensemble = None
        self.region_encoder = None
        if region_ensemble is not None:
            self.region_ensemble = MODELS.build(region_ensemble)
            if region_encoder is not None:
                self.region_encoder = CORE_MODELS.build(region_encoder)
            elif getattr(self.backbone, 'captioner', None) is None:
                raise ValueError('region_ensemble needs a CLIP image tower: give '
                                 'region_encoder, or a backbone with an implicit captioner '
                                 'whose tower it shares')
        self.register_buffer('clip_mean', torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer('clip_std', torch.tensor(CLIP_STD).view(1, 3, 1, 1), False)
        self._text_cache: Dict[tuple, Tensor] = {}
        if self.test_cfg['lean']:
            make_lean(self, self.test_cfg['lean'])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if any(k.startswith(tuple(prefix + p for p in OFFICIAL_PREFIXES)) for k in state_dict):
            raise ValueError('this is an official ODISE checkpoint: convert it first with '
                             '`python tools/convert_checkpoint.py odise_official SRC DST` and '
                             'load DST')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ text
    def text_embeds(self, prompts: Sequence[str], cache: bool = True) -> Tensor:
        """``(N, D_t)`` CLIP text embeddings of prompts (projected, not normalised: ODISE
        projects them with a bias); a vocabulary's are cached while the tower is frozen
        (``cache=False`` for prompts that change every call, a caption's words)."""
        key = tuple(prompts)
        cached = self._text_cache.get(key) if cache else None
        if cached is not None:
            return cached
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.text_encoder.frozen):
            embeds = torch.cat([self.text_encoder(list(prompts[i:i + 256])).pooled
                                for i in range(0, len(prompts), 256)])
        if cache and self.text_encoder.frozen and not torch.is_inference_mode_enabled():
            self._text_cache[key] = embeds.detach()
        return embeds

    def vocabulary_templates(self) -> List[str]:
        """The templates class names are prompted with (each head's)."""
        return [self.clip_template]

    def encode_vocabulary(self) -> None:
        """Embed the current vocabulary's prompts now (cached), not at the first image."""
        names = self.require_vocabulary().names
        for template in self.vocabulary_templates():
            self.text_embeds(self.class_prompts(names, template)[0])

    def class_prompts(self, names: Sequence[str], template: str) -> Tuple[List[str], List[int]]:
        """Prompts of every synonym of every class, and the number of synonyms per class."""
        flat, counts = split_synonyms(names, self.synonym_separator)
        return [template.format(name) for name in flat], counts

    # ------------------------------------------------------------------ image side
    def extract_feat(self, inputs: Tensor) -> Tuple[Tensor, List[Tensor]]:
        """``(B, 3, H, W)`` in ``[0, 1]`` -> mask features ``(B, C, H/4, W/4)`` and the
        pixel decoder's memories."""
        return self.pixel_decoder(list(self.backbone(inputs)))

    def decode(self, inputs: Tensor):
        """The query decoder's predictions and a mask embedding ``(B, Q, D)`` for each."""
        mask_features, memories = self.extract_feat(inputs)
        decoded = self.query_decoder(mask_features, memories)
        embeds = [self.mask_embed(q, mask_features, m)
                  for q, m in zip(decoded.query_embeds, decoded.mask_logits)]
        return decoded, embeds

    @property
    def clip_tower(self):
        """The CLIP image tower of the region ensemble."""
        if self.region_encoder is not None:
            return self.region_encoder
        return self.backbone.captioner.image_encoder

    def clip_logits(self, inputs: Tensor, mask_logits: Tensor, vocabulary: Vocabulary):
        """CLIP's ``(B, Q, K)`` logits of each mask (names of a class merged by the maximum)
        and ``(B, Q)`` which queries have a region."""
        tower = self.clip_tower
        dtype = next(tower.parameters()).dtype
        images = ((inputs - self.clip_mean) / self.clip_std).to(dtype)
        last = tower(images)[-1] if self.region_ensemble.region == 'mask_pool' else None
        regions, valid = self.region_ensemble.embed(tower, images, last, mask_logits.to(dtype))
        prompts, counts = self.class_prompts(vocabulary.names, self.clip_template)
        texts = F.normalize(self.text_embeds(prompts), dim=-1)
        scale = tower.logit_scale.exp().clamp(max=100)
        logits = scale * F.normalize(regions.float(), dim=-1) @ texts.t()
        return merge_synonyms(logits, counts), valid

    def open_logits(self, inputs: Tensor, data_samples: SampleList):
        """``(B, Q, K + 1)`` class logits ("no object" last) and ``(B, Q, h, w)`` masks of the
        last prediction, for the current vocabulary."""
        raise NotImplementedError

    def predict(self, inputs: Tensor, data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        mode = torch.inference_mode() if self.test_cfg['inference_mode'] \
            else contextlib.nullcontext()
        with mode:
            vocabulary = self.require_vocabulary()
            cls_logits, mask_logits = self.open_logits(inputs, data_samples)
            if self.region_ensemble is not None:
                clip_logits, valid = self.clip_logits(inputs, mask_logits, vocabulary)
                cls_logits = self.region_ensemble.combine(cls_logits, clip_logits, valid,
                                                          vocabulary)
            results = self.postprocessor.predict(cls_logits, mask_logits,
                                                 [s.metainfo for s in data_samples],
                                                 vocabulary, rescale)
        return self.add_pred_to_datasample(data_samples, results)

    def _forward(self, inputs: Tensor,
                 data_samples: Optional[SampleList] = None) -> MaskClassificationOutput:
        """Network forward: per prediction, class and mask logits."""
        raise NotImplementedError


@implements('Model', example='odise::odise_tiny_shapes_label.py',
            inputs=dict(tasks=('panoptic',)))
@MODELS.register_module()
class CategoryODISE(ODISE):
    """ODISE trained with category labels (official ``CategoryODISE``): the mask embeddings
    are classified against projected CLIP embeddings of the class names
    (:class:`~..heads.CategoryHead`, a learned null embedding as "no object"), trained with
    Mask2Former's matching losses.

    Args:
        class_template: prompt of class names for the diffusion head (official: the bare
            names, ``'{}'``).
        (others as :class:`ODISE`)
    """

    def __init__(self, *args, class_template: str = '{}', **kwargs):
        super().__init__(*args, **kwargs)
        self.class_template = class_template
        if self.head.null_embed.device.type != 'meta':  # a model built for its shapes only
            with torch.no_grad():
                # Official initialisation: CLIP's (unnormalised) embedding of "".
                self.head.null_embed.copy_(self.text_embeds([''])[:1])

    def vocabulary_templates(self) -> List[str]:
        return [self.class_template, self.clip_template]

    def class_logits(self, mask_embeds: Tensor, names: Sequence[str]) -> Tensor:
        prompts, counts = self.class_prompts(names, self.class_template)
        return self.head(mask_embeds, self.text_embeds(prompts), counts)

    def _forward(self, inputs: Tensor,
                 data_samples: Optional[SampleList] = None) -> MaskClassificationOutput:
        decoded, embeds = self.decode(inputs)
        names = self.require_vocabulary().names
        return MaskClassificationOutput(
            cls_logits=[self.class_logits(e, names) for e in embeds],
            mask_logits=decoded.mask_logits)

    def loss(self, inputs: Tensor, data_samples: SampleList) -> Dict[str, Tensor]:
        outputs = self._forward(inputs)
        targets = panoptic_targets(data_samples, self.require_vocabulary())
        return self.criterion(outputs, targets, [s.metainfo for s in data_samples])

    def open_logits(self, inputs: Tensor, data_samples: SampleList):
        decoded, embeds = self.decode(inputs)
        return (self.class_logits(embeds[-1], self.require_vocabulary().names),
                decoded.mask_logits[-1])


@implements('Model', example='odise::odise_tiny_shapes_caption.py',
            inputs=dict(tasks=('panoptic',)))
@MODELS.register_module()
class CaptionODISE(ODISE):
    """ODISE trained with image captions (official ``CaptionODISE``): masks are learned
    class-agnostic (``head`` = :class:`~..heads.ObjectnessHead`, every target labelled
    "object"), and the mask embeddings are grounded in the nouns of each image's caption
    against the batch's other captions (:class:`~..losses.MaskGroundingLoss`, every
    prediction). At inference the word head scores class names in the nouns' place.

    Per image and iteration: one caption drawn at random, its noun phrases
    (:class:`~openseg_odise.text.NounPhraseExtractor`), ``num_words`` of them drawn with
    replacement, each prompted with ``word_template``. Samples without ``captions`` train
    only the masks; samples without masks (caption data) only the grounding.

    Args:
        word_head: :class:`~..heads.WordHead`.
        grounding_loss: :class:`~..losses.MaskGroundingLoss`.
        num_words: nouns per caption (official 8).
        word_template: prompt of nouns and, at inference, of class names (official ``'a
            photo of a {}.'``).
        noun_extractor: :class:`~openseg_odise.text.NounPhraseExtractor` arguments.
        (others as :class:`ODISE`)
    """

    def __init__(self, *args, word_head: dict, grounding_loss: dict, num_words: int = 8,
                 word_template: str = 'a photo of a {}.', noun_extractor: Optional[dict] = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.word_head = MODELS.build(word_head)
        self.grounding_loss = MODELS.build(grounding_loss)
        self.num_words = num_words
        self.word_template = word_template
        self.nouns = NounPhraseExtractor(**(noun_extractor or {}))

    def vocabulary_templates(self) -> List[str]:
        return [self.word_template, self.clip_template]

    def sample_words(self, captions: Sequence[Sequence[str]]) -> Tuple[List[List[str]], Tensor]:
        """Per image: ``num_words`` noun phrases of one random caption (``''`` where a
        caption has none) and ``(B, num_words)`` which are real."""
        words = []
        for options in captions:
            caption = options[np.random.randint(len(options))] if options else ''
            phrases = self.nouns(caption) or ['']
            words.append([phrases[i] for i in np.random.randint(len(phrases),
                                                                size=self.num_words)])
        valid = torch.tensor([[bool(w) for w in ws] for ws in words])
        return words, valid

    def _forward(self, inputs: Tensor,
                 data_samples: Optional[SampleList] = None) -> MaskClassificationOutput:
        decoded, _ = self.decode(inputs)
        return MaskClassificationOutput(
            cls_logits=[self.head(q) for q in decoded.query_embeds],
            mask_logits=decoded.mask_logits)

    def loss(self, inputs: Tensor, data_samples: SampleList) -> Dict[str, Tensor]:
        decoded, embeds = self.decode(inputs)
        losses = {}
        with_masks = ['gt_instances' in s for s in data_samples]
        if any(with_masks):
            vocabulary = self.require_vocabulary()
            targets = panoptic_targets(data_samples, vocabulary)
            for target in targets:
                target.labels = torch.zeros_like(target.labels)  # class-agnostic
            outputs = MaskClassificationOutput(
                cls_logits=[self.head(q) for q in decoded.query_embeds],
                mask_logits=decoded.mask_logits)
            losses.update(self.criterion(outputs, targets, [s.metainfo for s in data_samples]))
        captions = [s.get('captions', []) for s in data_samples]
        words, valid = self.sample_words(captions)
        flat = [self.word_template.format(w) for ws in words for w in ws]
        word_embeds = self.word_head.embed_texts(self.text_embeds(flat, cache=False)).view(
            len(words), self.num_words, -1)
        valid = valid.to(word_embeds.device)
        last = len(embeds) - 1
        for index, mask_embeds in enumerate(embeds):
            name = 'loss_grounding' if index == last else f'd{index}.loss_grounding'
            losses[name] = self.grounding_loss(mask_embeds, word_embeds, valid,
                                               self.word_head.scale)
        return losses

    def open_logits(self, inputs: Tensor, data_samples: SampleList):
        decoded, embeds = self.decode(inputs)
        prompts, counts = self.class_prompts(self.require_vocabulary().names, self.word_template)
        words = self.word_head(embeds[-1], self.text_embeds(prompts), counts)
        objectness = self.head(decoded.query_embeds[-1]).softmax(-1)
        # The official combination: class probabilities among the names, times "object".
        probs = torch.cat([words.softmax(-1) * objectness[..., :1], objectness[..., 1:]], -1)
        return (probs + 1e-8).log(), decoded.mask_logits[-1]
