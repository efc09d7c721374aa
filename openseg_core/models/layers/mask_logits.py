"""Mask logits as query-pixel dot products, with a backward that skips unsupervised queries."""
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from .linear import needs_gradient, onednn_usable


class _MaskLogits(torch.autograd.Function):
    """``einsum('bqc,bchw->bqhw')`` whose backward multiplies only the rows of the incoming
    gradient that are not all zero.

    Mask losses supervise the matched queries only (a handful of 100), so the gradient of a
    decoder layer's ``(B, Q, H/4, W/4)`` mask logits is zero for most queries; the dense
    backward would still spend two ``Q x C x HW`` products on it per layer. Skipping zero rows
    gives the same gradients (to float summation order).
    """

    @staticmethod
    def forward(ctx, embeds: Tensor, features: Tensor) -> Tensor:
        ctx.save_for_backward(embeds, features)
        return torch.einsum('bqc,bchw->bqhw', embeds, features)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        embeds, features = ctx.saved_tensors
        batch, num_queries, height, width = grad.shape
        grad = grad.reshape(batch, num_queries, height * width)
        features = features.reshape(batch, -1, height * width)
        live = grad.ne(0).any(-1)  # (B, Q)
        grad_embeds = grad_features = None
        if ctx.needs_input_grad[0]:
            grad_embeds = torch.zeros_like(embeds)
        if ctx.needs_input_grad[1]:
            grad_features = torch.empty_like(features)
        for b in range(batch):
            rows = live[b].nonzero().squeeze(1)
            if rows.numel() == 0:
                if grad_features is not None:
                    grad_features[b].zero_()
                continue
            rows_grad = grad[b, rows]  # (n, HW)
            if grad_embeds is not None:
                grad_embeds[b, rows] = rows_grad @ features[b].t()
            if grad_features is not None:
                torch.mm(embeds[b, rows].t(), rows_grad, out=grad_features[b])
        if grad_features is not None:
            grad_features = grad_features.view(batch, -1, height, width)
        return grad_embeds, grad_features


def mask_logits(embeds: Tensor, features: Tensor) -> Tensor:
    """``(B, Q, C)`` mask embeddings x ``(B, C, h, w)`` per-pixel features -> ``(B, Q, h, w)``
    logits, as ``torch.einsum('bqc,bchw->bqhw', ...)``; the backward costs only as many
    queries as receive a gradient.

    Without gradients, float32 NHWC features on a CPU go through oneDNN as a 1 x 1
    convolution per image, whose weights are the embeddings (3x faster than the einsum for
    101 x 512 x 128 x 128 on 2 cores, the NCHW copy of the result included; on NCHW features
    the convolution would reorder them first and is no faster)."""
    if needs_gradient(embeds, features):
        return _MaskLogits.apply(embeds, features)
    if (features.dim() == 4 and features.shape[1] > 1 and onednn_usable(embeds, features)
            and features.is_contiguous(memory_format=torch.channels_last)):
        # Slices, not unbound images: ``image[None]`` has a batch stride oneDNN reads as
        # another layout and copies the features first (10x slower).
        return torch.cat([F.conv2d(features[b:b + 1], embeds[b, :, :, None, None])
                          for b in range(features.shape[0])]).contiguous()
    return torch.einsum('bqc,bchw->bqhw', embeds, features)
