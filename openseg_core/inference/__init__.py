from .segmenter import Segmenter, draw_overlay, preprocess_images

__all__ = ['Segmenter', 'draw_overlay', 'preprocess_images']
