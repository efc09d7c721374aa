"""X-Decoder's tasks: each turns its samples into losses and predictions with the model's
shared parts (``XDecoder.tasks`` in the config picks them)."""
from .captioning import CaptioningTask
from .generic import GenericTask
from .referring import ReferringTask

__all__ = ['GenericTask', 'ReferringTask', 'CaptioningTask']
