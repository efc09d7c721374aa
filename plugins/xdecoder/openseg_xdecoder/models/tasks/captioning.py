"""Captioning and image-text retrieval from one decoding pass."""
from typing import Dict, List

import torch
import torch.nn.functional as F
from mmdet.structures import SampleList
from mmengine.model import BaseModule
from torch import Tensor

from openseg_core.models.interfaces import implements
from openseg_core.utils.distributed import all_gather_with_grad

from ...registry import MODELS


@implements(covered_by='xdecoder.XDecoder')
@MODELS.register_module()
class CaptioningTask(BaseModule):
    """``L_cap``: next-token cross-entropy of the text queries against the token-embedding
    table (teacher forcing on one of each image's captions); ``L_it``: the bidirectional
    image-text contrastive loss between the global query and the caption embeddings of the
    batch, plus ``loss_it_backbone`` with the official retrieval ensemble. Predictions:
    ``pred_caption`` (beam search), ``pred_image_embed`` and ``pred_text_embeds`` (the image's
    reference captions).

    In a distributed run the contrastive losses score every image against every caption of
    the global batch (the paper's 1024 pairs come from many GPUs, as in the official code):
    each process gathers the embeddings with their gradient and computes the same global
    loss, whose exact gradient reaches each process's own embeddings. Every process must then
    hold the same number of image-text pairs (mmdet's ``MultiSourceSampler`` does).

    Args:
        loss_caption: e.g. the core's ``TokenCrossEntropyLoss``.
        loss_retrieval: e.g. the core's ``ImageTextContrastiveLoss``.
        global_batch: contrast over the global batch (True) or each process's own.
    """

    def __init__(self, loss_caption: dict = dict(type='TokenCrossEntropyLoss'),
                 loss_retrieval: dict = dict(type='ImageTextContrastiveLoss'),
                 global_batch: bool = True, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.loss_caption = MODELS.build(loss_caption)
        self.loss_retrieval = MODELS.build(loss_retrieval)
        self.global_batch = global_batch

    def _gather(self, embeds: Tensor) -> Tensor:
        return all_gather_with_grad(embeds) if self.global_batch else embeds

    def loss(self, model, feats, samples: SampleList) -> Dict[str, Tensor]:
        # One of each image's captions per step; torch's generator so resuming is exact.
        captions = [s.captions[int(torch.randint(len(s.captions), ()))] for s in samples]
        # One tower pass serves both losses: the tower is causal, so the features of
        # ``[start, w_1..w_k]`` are the teacher-forcing queries, and the end token's feature is
        # the caption embedding.
        encoded = model.text_encoder(captions)
        ids, real = encoded.token_ids, encoded.mask
        decoded = model.query_decoder(feats.mask_features, feats.memories, task='captioning',
                                      text_queries=model.text_queries(
                                          encoded.token_feats[:, :-1]),
                                      text_padding=~real[:, :-1])
        logits = model.head.caption_logits(decoded.text_embeds[-1],
                                           model.text_encoder.token_embedding_table)
        # Latent queries do not attend text under the captioning mask, so the global query
        # here is the retrieval embedding.
        text = self._gather(F.normalize(encoded.pooled, dim=-1))
        image = self._gather(model.head.embed(decoded.global_embeds[-1]))
        losses = dict(loss_caption=self.loss_caption(logits, ids[:, 1:], real[:, 1:]),
                      loss_it=self.loss_retrieval(model.head.similarity(image, text)))
        if model.head.backbone_proj is not None:
            backbone = self._gather(F.normalize(feats.pooled @ model.head.backbone_proj, dim=-1))
            losses['loss_it_backbone'] = self.loss_retrieval(
                model.head.similarity(backbone, text))
        return losses

    def predict(self, model, feats, samples: SampleList, rescale: bool = True) -> List[dict]:
        results = [dict(pred_caption=text) for text in model.caption(feats)]
        images = model.image_embeddings(feats)
        references = [list(s.get('captions') or []) for s in samples]
        # All references of the batch in one encoder pass, then split per image.
        texts = model.text_embeddings(sum(references, [])) if any(references) else None
        start = 0
        for result, image, refs in zip(results, images, references):
            result['pred_image_embed'] = image
            if refs:
                result['pred_text_embeds'] = texts[start:start + len(refs)]
                start += len(refs)
        return results
