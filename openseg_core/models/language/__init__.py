"""Language decoding shared by the models that generate text."""
from .generation import GenerationOutput, StepFn, StepOutput, generate, reorder_cache

__all__ = ['GenerationOutput', 'StepFn', 'StepOutput', 'generate', 'reorder_cache']
