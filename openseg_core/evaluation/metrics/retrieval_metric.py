"""Image-text retrieval recall (R@k) in both directions over the evaluated set."""
from collections import OrderedDict
from typing import List, Sequence

import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric

from openseg_core.registry import METRICS


def retrieval_ranks(image_embeds: torch.Tensor, text_embeds: torch.Tensor,
                    text_owner: torch.Tensor, chunk: int = 1024):
    """Ranks of the right answers under cosine similarity, ties counted against the model.

    Args:
        image_embeds: ``(I, D)``.
        text_embeds: ``(T, D)``.
        text_owner: ``(T,)`` long, the index of each text's image.
        chunk: rows (images) or columns (texts) scored at once, bounding memory to
            ``chunk * max(I, T)`` similarities.

    Returns:
        ``(i2t, t2i)``: ``(I,)`` and ``(T,)`` long 0-based ranks. An image's rank is the
        number of other images' texts scoring at least as high as its best own text; a text's
        rank is the number of other images scoring at least as high as its own. A tie with a
        wrong answer thus always loses: constant embeddings get chance-level recall, not
        the perfect recall an index-order tie-break would give the first items. An image's own
        texts never count against each other.
    """
    # float64: equal embeddings must give bit-equal scores for the tie rule to see them.
    images = F.normalize(image_embeds.double(), dim=-1)
    texts = F.normalize(text_embeds.double(), dim=-1)
    i2t = torch.empty(len(images), dtype=torch.long)
    for start in range(0, len(images), chunk):
        rows = torch.arange(start, min(start + chunk, len(images)))
        sim = images[rows] @ texts.T
        own = text_owner[None, :] == rows[:, None]
        best_own = sim.masked_fill(~own, float('-inf')).max(dim=1, keepdim=True).values
        i2t[rows] = ((sim >= best_own) & ~own).sum(dim=1)
    t2i = torch.empty(len(texts), dtype=torch.long)
    for start in range(0, len(texts), chunk):
        cols = torch.arange(start, min(start + chunk, len(texts)))
        sim = images @ texts[cols].T
        own_score = sim[text_owner[cols], torch.arange(len(cols))]
        t2i[cols] = (sim >= own_score[None, :]).sum(dim=0) - 1  # minus the own image
    return i2t, t2i


@METRICS.register_module()
class RetrievalMetric(BaseMetric):
    """Image-to-text and text-to-image recall at k (``i2t_R@k``, ``t2i_R@k``), in percent.

    All images and all their captions in the evaluated set form one gallery, scored by cosine
    similarity. ``i2t_R@k`` is the share of images with at least one of their own captions
    among their top-k texts; ``t2i_R@k`` the share of captions whose image is among their
    top-k images. Ties with a wrong answer count as losses (see :func:`retrieval_ranks`).

    Each data sample is one distinct image and needs ``pred_image_embed`` (tensor ``(D,)``)
    and ``pred_text_embeds`` (tensor ``(N_i, D)``, one row per ground-truth caption of that
    image; ``N_i >= 1`` and may differ between images).

    Args:
        topk: the k of R@k.
    """

    default_prefix = 'retrieval'

    def __init__(self, topk: Sequence[int] = (1, 5, 10), **kwargs):
        super().__init__(**kwargs)
        self.topk = tuple(topk)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            img_id = sample.get('img_id', '?')
            image, texts = sample.get('pred_image_embed'), sample.get('pred_text_embeds')
            if image is None or texts is None:
                missing = [k for k, v in (('pred_image_embed', image),
                                          ('pred_text_embeds', texts)) if v is None]
                raise ValueError(
                    f'RetrievalMetric: sample img_id={img_id} has no {" or ".join(missing)}. '
                    'Evaluate with a model whose predict() sets both, on a dataset that loads '
                    "the 'captions' of each image (e.g. CocoCaptionsDataset).")
            texts = torch.as_tensor(texts)
            image = torch.as_tensor(image)
            if image.dim() != 1 or texts.dim() != 2 or len(texts) == 0 \
                    or texts.shape[1] != image.shape[0]:
                raise ValueError(
                    f'RetrievalMetric: sample img_id={img_id} has pred_image_embed of shape '
                    f'{tuple(image.shape)} and pred_text_embeds of shape {tuple(texts.shape)}; '
                    'they must be (D,) and (N, D) with N >= 1 captions of that image.')
            # CPU: mmengine gathers results across ranks, and GPU memory is for the model.
            self.results.append((image.detach().float().cpu(), texts.detach().float().cpu()))

    def compute_metrics(self, results: List[tuple]) -> dict:
        if not results:
            raise ValueError('RetrievalMetric: no samples were evaluated; check that the '
                             'evaluator runs on a non-empty captioning dataset.')
        images = torch.stack([image for image, _ in results])
        texts = torch.cat([text for _, text in results])
        owner = torch.cat([torch.full((len(text),), i, dtype=torch.long)
                           for i, (_, text) in enumerate(results)])
        i2t, t2i = retrieval_ranks(images, texts, owner)
        metrics = OrderedDict()
        for name, ranks in (('i2t', i2t), ('t2i', t2i)):
            for k in self.topk:
                metrics[f'{name}_R@{k}'] = 100 * (ranks < k).double().mean().item()
        return metrics
