from .segmenter import Segmenter, draw_overlay

__all__ = ['Segmenter', 'draw_overlay']
