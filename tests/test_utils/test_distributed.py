"""all_gather_with_grad in 2 real processes (gloo): every process sees the global batch and
gets the global loss's exact gradient once the model wrapper averages gradients."""
import pytest
import torch

from openseg_core.testing.distributed import run_in_processes
from openseg_core.utils.distributed import all_gather_with_grad

WORLD = 2


def _local(rank: int) -> torch.Tensor:
    """Rank ``rank``'s ``(3, 4)`` embeddings (each process builds everyone's, takes its own)."""
    return torch.randn(WORLD, 3, 4, generator=torch.Generator().manual_seed(0))[rank]


def _global_loss(embeds: torch.Tensor) -> torch.Tensor:
    """A loss over the whole batch that couples the rows (a softmax over all pairs)."""
    logits = embeds @ embeds.t()
    return torch.nn.functional.cross_entropy(logits, torch.arange(len(embeds)))


def _gather_and_backprop(rank: int, world: int):
    local = _local(rank).requires_grad_()
    gathered = all_gather_with_grad(local)
    loss = _global_loss(gathered)
    loss.backward()
    return gathered.detach(), loss.detach(), local.grad / world  # DDP's average


def _unequal(rank: int, world: int):
    try:
        all_gather_with_grad(torch.zeros(rank + 1, 2))
    except ValueError as exc:
        return str(exc)
    return None


def test_each_process_sees_the_global_batch_and_its_exact_gradient():
    results = run_in_processes(_gather_and_backprop, WORLD)
    batch = torch.cat([_local(rank) for rank in range(WORLD)]).requires_grad_()
    expected_loss = _global_loss(batch)
    expected_loss.backward()
    for rank, (gathered, loss, grad) in enumerate(results):
        assert torch.equal(gathered, batch.detach())
        torch.testing.assert_close(loss, expected_loss.detach())
        torch.testing.assert_close(grad, batch.grad[3 * rank:3 * (rank + 1)])


def test_unequal_batches_fail_on_every_process():
    messages = run_in_processes(_unequal, WORLD)
    assert all(m and 'same batch on every process' in m and '[1, 2]' in m for m in messages)


def test_identity_outside_a_distributed_run():
    x = torch.randn(3, 2)
    assert all_gather_with_grad(x) is x


