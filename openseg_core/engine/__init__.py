from .fsdp import OpenSegFlexibleRunner, OpenSegFSDPStrategy
from .hooks import ResumeStateHook, VocabularyHook
from .optim_wrapper_constructor import FrozenAwareOptimWrapperConstructor
from .runner import OpenSegRunner
from .safe_checkpoint import allow_openseg_checkpoint_types

__all__ = ['VocabularyHook', 'ResumeStateHook', 'allow_openseg_checkpoint_types',
           'FrozenAwareOptimWrapperConstructor', 'OpenSegRunner', 'OpenSegFlexibleRunner',
           'OpenSegFSDPStrategy']
