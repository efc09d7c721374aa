from .image_encoders import ImageEncoders, SamViTEncoder, TimmViTEncoder
from .language_models import CausalLanguageModel, T5LanguageModel
from .mask_head import MaskAdapter, SamMaskHead, sam_mask_loss
from .pixel_llm import PixelLLM, point_l1
from .prompt_encoder import LocationPromptEncoder
from .prompt_feature_extractor import PromptFeatureExtractor
from .simple_feature_pyramid import SimpleFeaturePyramid
from .trace_head import TraceHead

__all__ = ['CausalLanguageModel', 'ImageEncoders', 'LocationPromptEncoder', 'MaskAdapter',
           'PixelLLM', 'PromptFeatureExtractor', 'SamMaskHead', 'SamViTEncoder',
           'SimpleFeaturePyramid', 'T5LanguageModel', 'TimmViTEncoder', 'TraceHead',
           'point_l1', 'sam_mask_loss']
