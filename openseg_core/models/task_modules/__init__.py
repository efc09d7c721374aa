"""Parts that serve the losses of several model families (matching)."""
from .hungarian_matcher import HungarianMatcher

__all__ = ['HungarianMatcher']
