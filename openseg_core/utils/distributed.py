"""Collectives that keep the autograd graph (contrastive losses over the global batch)."""
import torch
import torch.distributed as dist
from torch import Tensor


class _AllGather(torch.autograd.Function):
    """All-gather whose backward sums every process's gradient for this rank's slice, so each
    rank's loss over the global batch back-propagates into its own inputs (as CLIP's and
    X-Decoder's gathers do)."""

    @staticmethod
    def forward(ctx, tensor: Tensor):
        ctx.rank, ctx.world = dist.get_rank(), dist.get_world_size()
        # Unequal sizes would make all_gather fail or read garbage; every rank sees the same
        # sizes, so every rank raises.
        sizes = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(ctx.world)]
        dist.all_gather(sizes, torch.tensor([tensor.shape[0]], device=tensor.device))
        if len({int(size) for size in sizes}) > 1:
            raise ValueError(f'all_gather_with_grad needs the same batch on every process, got '
                             f'{[int(size) for size in sizes]}: pad and mask, or sample equal '
                             'batches (mmdet MultiSourceSampler)')
        gathered = [torch.empty_like(tensor) for _ in range(ctx.world)]
        dist.all_gather(gathered, tensor.contiguous())
        ctx.size = tensor.shape[0]
        return torch.cat(gathered, 0)

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.size:(ctx.rank + 1) * ctx.size]


def all_gather_with_grad(tensor: Tensor) -> Tensor:
    """``(N, ...)`` on each of ``W`` processes -> ``(W * N, ...)``, rank order, differentiable.

    The identity outside a distributed run. Every rank must pass the same ``N`` (pad and mask
    otherwise).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    return _AllGather.apply(tensor)
