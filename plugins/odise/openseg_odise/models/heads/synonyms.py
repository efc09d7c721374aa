"""Class names with synonyms ("dog, puppy"): scored name by name, merged by the maximum, as
ODISE's ``ensemble_logits_with_labels``."""
from typing import List, Sequence, Tuple

import torch
from torch import Tensor


def split_synonyms(names: Sequence[str], separator: str = ',') -> Tuple[List[str], List[int]]:
    """``['dog, puppy', 'cat']`` -> ``(['dog', 'puppy', 'cat'], [2, 1])``."""
    flat, counts = [], []
    for name in names:
        parts = [part.strip() for part in name.split(separator)] if separator else [name]
        parts = [part for part in parts if part] or [name.strip()]
        flat.extend(parts)
        counts.append(len(parts))
    return flat, counts


def merge_synonyms(logits: Tensor, counts: Sequence[int]) -> Tensor:
    """``(..., sum(counts))`` logits of every name -> ``(..., len(counts))``, the maximum over
    each class's names."""
    if all(count == 1 for count in counts):
        return logits
    return torch.stack([part.amax(-1) for part in logits.split(list(counts), dim=-1)], -1)
