from .text_classifier_head import TextClassifierHead

__all__ = ['TextClassifierHead']
