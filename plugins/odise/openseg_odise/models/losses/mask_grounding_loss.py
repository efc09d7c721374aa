"""ODISE's grounding loss between the masks of a batch's images and the nouns of its
captions."""
import torch
import torch.distributed as dist
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor

from openseg_core.models.interfaces import contract, expect, expect_finite, expect_shape, \
    implements
from openseg_core.utils.distributed import all_gather_with_grad

from ...registry import MODELS

#: Which axis the grounding weights are a softmax over (see :class:`MaskGroundingLoss`).
SOFTMAX_OVER = ('queries', 'words')


@contract('odise.GroundingLoss')
def check_grounding_loss(part) -> None:
    """``(B, Q, D)`` masks, ``(B, K, D)`` words, ``(B, K)`` valid words, a scale -> a finite
    scalar that reaches both embeddings."""
    masks = torch.randn(3, 4, 8, requires_grad=True)
    words = torch.randn(3, 2, 8, requires_grad=True)
    valid = torch.ones(3, 2, dtype=torch.bool)
    loss = part(masks, words, valid, torch.tensor(10.0))
    expect_shape(loss, (), 'grounding loss')
    expect_finite(loss, 'grounding loss')
    loss.backward()
    expect(masks.grad is not None and words.grad is not None,
           'the loss must reach the mask and the word embeddings')


@implements('odise.GroundingLoss', example=dict())
@MODELS.register_module()
class MaskGroundingLoss(BaseModule):
    """Image-caption contrastive loss through mask-word grounding.

    With ``s[m, q, n, k] = scale * cos(mask q of image m, word k of caption n)`` the
    similarity of image ``m`` and caption ``n`` is ``g[m, n] = mean_k sum_q w * s`` with
    ``w = softmax_q s`` (``softmax_over='queries'``, the official code: each word picks its
    masks) or ``w = softmax_k s`` (``'words'``, the paper's equation: each mask spreads over
    the words). The loss is the mean of the image->caption and caption->image cross-entropies
    of ``g`` over the batch, gathered across processes with gradient; captions without a valid
    word are left out as targets (official weighting).

    Args:
        softmax_over: ``'queries'`` or ``'words'``.
        loss_weight: the loss's weight.
    """

    def __init__(self, softmax_over: str = 'queries', loss_weight: float = 1.0, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if softmax_over not in SOFTMAX_OVER:
            raise ValueError(f'softmax_over must be one of {SOFTMAX_OVER}, not '
                             f'{softmax_over!r}')
        self.softmax_over = softmax_over
        self.loss_weight = loss_weight

    def similarity(self, mask_embeds: Tensor, word_embeds: Tensor, scale: Tensor) -> Tensor:
        """``(B_m, Q, D)`` and ``(B_w, K, D)`` normalised -> ``(B_m, B_w)`` image-caption
        similarities ``g``."""
        sims = torch.einsum('mqd,nkd->mqnk', mask_embeds, word_embeds) * scale
        weights = sims.softmax(dim=1 if self.softmax_over == 'queries' else -1)
        return (weights * sims).sum(1).mean(-1)

    def forward(self, mask_embeds: Tensor, word_embeds: Tensor, word_valid: Tensor,
                scale: Tensor) -> Tensor:
        """Args:
            mask_embeds: ``(B, Q, D)`` of this process's images.
            word_embeds: ``(B, K, D)`` of their captions' words (caption ``i`` is image
                ``i``'s).
            word_valid: ``(B, K)`` False for padding words (no noun found).
            scale: the similarity scale (the word head's clamped logit scale).

        Returns:
            the weighted scalar loss.
        """
        masks = F.normalize(mask_embeds, dim=-1)
        words = F.normalize(word_embeds, dim=-1)
        valid = word_valid.any(-1).to(masks.dtype)
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        labels = torch.arange(len(masks), device=masks.device) + rank * len(masks)
        # Every image of the world against this process's captions, and the reverse.
        world_img_txt = self.similarity(all_gather_with_grad(masks), words, scale)   # (W*B, B)
        img_world_txt = self.similarity(masks, all_gather_with_grad(words), scale)   # (B, W*B)
        loss_txt = (F.cross_entropy(world_img_txt.t(), labels, reduction='none') * valid).mean()
        world_valid = all_gather_with_grad(valid)
        if world_valid.sum() > 0:
            loss_img = F.cross_entropy(img_world_txt, labels, weight=world_valid)
        else:  # no caption with a noun anywhere: nothing to ground (0, keeping the graph)
            loss_img = img_world_txt.sum() * 0
        return self.loss_weight * 0.5 * (loss_txt + loss_img)
