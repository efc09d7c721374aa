from .hooks import VocabularyHook
from .safe_checkpoint import allow_openseg_checkpoint_types

__all__ = ['VocabularyHook', 'allow_openseg_checkpoint_types']
