from .segmenter import Segmenter, draw_overlay, drawable_segments, preprocess_images

__all__ = ['Segmenter', 'draw_overlay', 'drawable_segments', 'preprocess_images']
