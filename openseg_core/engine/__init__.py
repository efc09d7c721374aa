from .hooks import RandomStateHook, VocabularyHook
from .safe_checkpoint import allow_openseg_checkpoint_types

__all__ = ['VocabularyHook', 'RandomStateHook', 'allow_openseg_checkpoint_types']
