from .generator import (HELD_OUT_CLASSES, STUFF_CLASSES, THING_CLASSES, ShapesSpec,
                        generate_shapes, shapes_categories)

__all__ = ['THING_CLASSES', 'STUFF_CLASSES', 'HELD_OUT_CLASSES', 'ShapesSpec',
           'generate_shapes', 'shapes_categories']
