"""The query-based detection family (boxes + masks + sigmoid prompt classification); see
:mod:`.contracts` for the shapes its parts exchange."""
from .one_to_many_assigner import OneToManyAssigner
from .vision_language_align import VisionLanguageAlign

__all__ = ['OneToManyAssigner', 'VisionLanguageAlign']
