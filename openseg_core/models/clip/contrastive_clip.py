"""Contrastive image-text pretraining of an open_clip model under mmengine, and its zero-shot
classification: open_clip's model, tokenizer and ``ClipLoss``; mmengine's runner around them."""
import logging
import math
import random
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from openseg_core.registry import MODELS

from ..base import OpenSegModel
from ..interfaces import contract, expect, expect_finite, expect_shape, implements

#: The prompt of CLIP's zero-shot classification.
DEFAULT_TEMPLATES = ('a photo of a {}.',)
TINY_CLIP = dict(model_name='ShapesCLIP-RN', thing_classes=('circle', 'star'),
                 stuff_classes=('sky',))


@implements('clip.ContrastiveModel', example=TINY_CLIP)
@MODELS.register_module()
class ContrastiveCLIP(OpenSegModel):
    """An open_clip CLIP trained with CLIP's symmetric InfoNCE (``open_clip.ClipLoss``).

    ``loss``: each sample's ``captions`` (one drawn at random per sample and step, as CLIP
    training on COCO-captions does) against its image. ``predict``: zero-shot classification
    of each image into the vocabulary (``set_vocabulary``; prompts from ``templates``,
    averaged): ``pred_score`` ``(K,)`` softmax over ``things + stuff`` and ``pred_image_embed``
    ``(D,)``. The weights are ``self.clip``, an ``open_clip.CLIP``: its ``state_dict()`` is an
    open_clip checkpoint.

    Args:
        model_name: an open_clip architecture (``open_clip.list_models()``), e.g.
            ``ShapesCLIP-RN``; built with random weights (nothing is downloaded).
        templates: prompt templates with a ``{}`` slot for the class name.
        caption_choice: ``'random'`` (training: one caption per sample per step) or
            ``'first'`` (deterministic).
    """

    def __init__(self, model_name: str = 'ShapesCLIP-RN',
                 templates: Sequence[str] = DEFAULT_TEMPLATES, caption_choice: str = 'random',
                 thing_classes: Sequence[str] = (), stuff_classes: Sequence[str] = (),
                 data_preprocessor: Optional[dict] = None, init_cfg=None):
        super().__init__(thing_classes, stuff_classes, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        import open_clip
        if open_clip.get_model_config(model_name) is None:
            raise ValueError(f'unknown open_clip architecture {model_name!r}; choose one of '
                             'open_clip.list_models()')
        if caption_choice not in ('random', 'first'):
            raise ValueError(f"caption_choice must be 'random' or 'first', got {caption_choice!r}")
        if not templates or any('{}' not in t for t in templates):
            raise ValueError(f'every prompt template needs a "{{}}" slot, got {templates!r}')
        self.model_name = model_name
        # open_clip warns that no weights were loaded: they come from training or from a
        # checkpoint loaded afterwards, never from a download.
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            self.clip = open_clip.create_model(model_name, pretrained=None)
        finally:
            logging.disable(previous)
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.criterion = open_clip.ClipLoss()
        self.templates = tuple(templates)
        self.caption_choice = caption_choice
        self._register_load_state_dict_pre_hook(_accept_open_clip_layout)

    def init_weights(self) -> None:
        # open_clip initialises its model in its constructor (CLIP's scheme); mmengine's
        # default init would overwrite it.
        pass

    # ----------------------------------------------------------------- encoders
    def encode_text(self, texts: Sequence[str]) -> Tensor:
        """``N`` strings -> ``(N, D)`` unit embeddings.

        The tower is causal and pools the end token, so running only the positions up to the
        longest text gives open_clip's ``encode_text`` exactly, several times faster than its
        full 77-token context (the captions here are 5-25 tokens).
        """
        clip = self.clip
        ids = self.tokenizer(list(texts)).to(clip.token_embedding.weight.device)
        # The end token has the largest id (open_clip pools it by argmax too); padding is 0,
        # which is also "!", so lengths never come from comparing ids to 0.
        ends = ids.argmax(dim=-1)
        length = int(ends.max()) + 1
        ids = ids[:, :length]
        x = clip.token_embedding(ids) + clip.positional_embedding[:length]
        x = clip.ln_final(clip.transformer(x, attn_mask=clip.attn_mask[:length, :length]))
        x = x[torch.arange(len(x), device=x.device), ends]
        x = clip.text_projection(x) if isinstance(clip.text_projection, torch.nn.Linear) \
            else x @ clip.text_projection
        return F.normalize(x, dim=-1)

    def extract_feat(self, inputs: Tensor) -> Tensor:
        """``(B, 3, H, W)`` normalised images -> ``(B, D)`` unit embeddings."""
        return F.normalize(self.clip.encode_image(inputs), dim=-1)

    def class_embeddings(self) -> Tensor:
        """``(K, D)`` unit text embeddings of the vocabulary, prompts averaged (CLIP's prompt
        ensembling)."""
        names = self.require_vocabulary().names
        per_template = torch.stack([self.encode_text([t.format(n) for n in names])
                                    for t in self.templates])
        return F.normalize(per_template.mean(0), dim=-1)

    # ----------------------------------------------------------------- mmdet's four methods
    def _captions(self, data_samples) -> list:
        texts = []
        for sample in data_samples:
            captions = sample.get('captions')
            if not captions:
                raise ValueError(f"ContrastiveCLIP: sample {sample.metainfo.get('img_id', '?')}"
                                 ' has no captions; train on an image-caption dataset '
                                 '(CocoCaptionsDataset) packed with PackOpenSegInputs')
            texts.append(random.choice(captions) if self.caption_choice == 'random'
                         else captions[0])
        return texts

    def loss(self, inputs: Tensor, data_samples) -> Dict[str, Tensor]:
        image = self.extract_feat(inputs)
        text = self.encode_text(self._captions(data_samples))
        with torch.no_grad():  # open_clip's training caps the temperature at 1/100
            self.clip.logit_scale.clamp_(0, math.log(100))
        scale = self.clip.logit_scale.exp()
        return dict(loss_clip=self.criterion(image, text, scale), logit_scale=scale.detach())

    def predict(self, inputs: Tensor, data_samples, rescale: bool = True):
        image = self.extract_feat(inputs)
        scores = (self.clip.logit_scale.exp() * image @ self.class_embeddings().t()).softmax(-1)
        for sample, score, embed in zip(data_samples, scores, image):
            sample.pred_score = score
            sample.pred_image_embed = embed
        return data_samples

    def _forward(self, inputs: Tensor, data_samples=None) -> Tensor:
        return self.extract_feat(inputs)


def _accept_open_clip_layout(state_dict, prefix, *args) -> None:
    """Let a plain open_clip state dict (``visual.*``, ``transformer.*``...: what the build
    saves, or any open_clip checkpoint of the architecture) load as this model's ``clip.*``,
    so ``tools/test.py CONFIG shapes_clip-<key>.pt`` evaluates the cached file itself."""
    if any(k.startswith(prefix + 'clip.') for k in state_dict):
        return
    for key in [k for k in state_dict if k.startswith(prefix)]:
        state_dict[prefix + 'clip.' + key[len(prefix):]] = state_dict.pop(key)


@contract('clip.ContrastiveModel')
def check_contrastive_model(part, size: Optional[int] = None) -> None:
    """``loss(images, samples with captions)`` -> finite ``loss_clip`` that back-propagates;
    ``predict`` -> ``pred_score (K,)`` summing to 1 over the vocabulary and
    ``pred_image_embed (D,)``; ``part.clip.state_dict()`` loads into
    ``open_clip.create_model(part.model_name)``."""
    import open_clip

    from openseg_core.structures import OpenSegDataSample
    size = size or part.clip.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    images = torch.randn(2, 3, size, size)
    samples = [OpenSegDataSample(metainfo=dict(img_id=i)) for i in range(2)]
    for sample, caption in zip(samples, (['a red circle'], ['a star on sky', 'sky'])):
        sample.captions = caption
    part.train()
    losses = part.loss(images, samples)
    expect_shape(losses.get('loss_clip'), (), 'loss_clip')
    expect_finite(losses['loss_clip'], 'loss_clip')
    losses['loss_clip'].backward()
    part.eval()
    with torch.no_grad():
        out = part.predict(images, samples)
    k = len(part.require_vocabulary())
    for sample in out:
        expect_shape(sample.pred_score, (k,), 'pred_score')
        expect(abs(float(sample.pred_score.sum()) - 1) < 1e-4, 'pred_score must sum to 1')
        expect_shape(sample.pred_image_embed, (None,), 'pred_image_embed')
    fresh = open_clip.create_model(part.model_name, pretrained=None)
    fresh.load_state_dict(part.clip.state_dict(), strict=True)
