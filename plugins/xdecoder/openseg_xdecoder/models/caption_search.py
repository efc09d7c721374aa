"""Greedy and beam-search caption decoding over a next-token log-probability function."""
from typing import Callable, List

import torch
from torch import Tensor

#: ``step(token_ids (N, t)) -> log-probabilities (N, V)`` of the next token.
StepFn = Callable[[Tensor], Tensor]


def _strip(ids: Tensor, end_id: int) -> List[List[int]]:
    """Drop the start token and everything from the end token on."""
    out = []
    for row in ids[:, 1:].tolist():
        out.append(row[:row.index(end_id)] if end_id in row else row)
    return out


def greedy_search(step: StepFn, batch: int, start_id: int, end_id: int, max_len: int,
                  device: torch.device) -> List[List[int]]:
    """The most likely token at each step, for ``batch`` sequences at once."""
    ids = torch.full((batch, 1), start_id, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    for _ in range(max_len):
        token = step(ids).argmax(-1)
        token = torch.where(done, torch.full_like(token, end_id), token)
        ids = torch.cat([ids, token[:, None]], dim=1)
        done |= token == end_id
        if done.all():
            break
    return _strip(ids, end_id)


def beam_search(step: StepFn, batch: int, beam_size: int, start_id: int, end_id: int,
                max_len: int, device: torch.device,
                length_penalty: float = 1.0) -> List[List[int]]:
    """Keep the ``beam_size`` best prefixes per sequence; ``step`` sees ``batch * beam_size``
    rows, beam-major within each sequence (row ``b * beam_size + k``).

    Finished beams stay in the beam at a constant score; the winner maximises
    ``sum log p / length ** length_penalty`` (1.0, as Hugging Face's default, so long captions
    are not penalised for their extra terms).
    """
    k = beam_size
    ids = torch.full((batch * k, 1), start_id, dtype=torch.long, device=device)
    scores = torch.zeros(batch, k, device=device)
    scores[:, 1:] = float('-inf')  # all beams start equal: expand from the first only
    done = torch.zeros(batch * k, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch * k, device=device)
    for _ in range(max_len):
        logp = step(ids).float()
        vocab = logp.shape[-1]
        logp[done] = float('-inf')
        logp[done, end_id] = 0.0
        total = (scores.view(-1, 1) + logp).view(batch, k * vocab)
        scores, flat = total.topk(k, dim=1)
        rows = (torch.arange(batch, device=device)[:, None] * k + flat // vocab).view(-1)
        token = (flat % vocab).view(-1)
        lengths = lengths[rows] + (~done[rows]).float()
        ids = torch.cat([ids[rows], token[:, None]], dim=1)
        done = done[rows] | (token == end_id)
        if done.all():
            break
    normalised = scores / lengths.view(batch, k).clamp(min=1) ** length_penalty
    best = normalised.argmax(1) + torch.arange(batch, device=device) * k
    return _strip(ids[best], end_id)
