"""ResumeStateHook stores and restores every random generator the training step draws from.

The CUDA generators cannot run on this CPU-only machine; their save/restore is checked by
standing in for ``torch.cuda``'s state functions (the CPU, numpy and Python ones are real).
"""
import random
from types import SimpleNamespace

import numpy as np
import torch

from openseg_core.engine import ResumeStateHook


def _draws():
    return torch.rand(3).tolist(), np.random.rand(2).tolist(), random.random()


def test_cpu_numpy_python_states_round_trip():
    hook, checkpoint = ResumeStateHook(), {}
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    hook.before_save_checkpoint(None, checkpoint)
    expected = _draws()
    _draws()  # the run goes on; a resumed run must repeat `expected`
    hook.after_load_checkpoint(None, checkpoint)
    hook.before_train_iter(None, 0)
    assert _draws() == expected
    hook.before_train_iter(None, 1)  # restored once, not at every iteration
    assert _draws() != expected


def test_cuda_states_are_saved_and_restored(monkeypatch):
    saved_states = [torch.tensor([1, 2], dtype=torch.uint8),
                    torch.tensor([3, 4], dtype=torch.uint8)]
    restored = []
    fake_cuda = SimpleNamespace(is_available=lambda: True, device_count=lambda: 2,
                                get_rng_state_all=lambda: saved_states,
                                set_rng_state_all=restored.append)
    monkeypatch.setattr(torch, 'cuda', fake_cuda)
    hook, checkpoint = ResumeStateHook(), {}
    hook.before_save_checkpoint(None, checkpoint)
    assert checkpoint['rng_state']['cuda'] == saved_states
    hook.after_load_checkpoint(None, checkpoint)
    hook.before_train_iter(None, 0)
    assert restored == [saved_states]


def test_a_gpu_checkpoint_resumes_on_a_cpu(monkeypatch):
    checkpoint = dict(rng_state=dict(torch=torch.get_rng_state(), numpy=np.random.get_state(),
                                     python=random.getstate(),
                                     cuda=[torch.tensor([1], dtype=torch.uint8)]))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    hook = ResumeStateHook()
    hook.after_load_checkpoint(None, checkpoint)
    hook.before_train_iter(None, 0)  # no CUDA: the CUDA states are unused, no error
