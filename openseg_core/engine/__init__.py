from .hooks import ResumeStateHook, VocabularyHook
from .safe_checkpoint import allow_openseg_checkpoint_types

__all__ = ['VocabularyHook', 'ResumeStateHook', 'allow_openseg_checkpoint_types']
