from .segmenter import (MAX_IMAGE_PIXELS, Segmenter, check_image, draw_overlay,
                        drawable_segments, inference_pipeline, preprocess_images, read_image)

__all__ = ['MAX_IMAGE_PIXELS', 'Segmenter', 'check_image', 'draw_overlay', 'drawable_segments',
           'inference_pipeline', 'preprocess_images', 'read_image']
