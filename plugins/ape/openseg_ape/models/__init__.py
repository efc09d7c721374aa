"""APE's model parts."""
from .ape import APE, APEOutput
from .criterion import APECriterion
from .layers import BiAttentionBlock
from .postprocess import APEPostProcessor, semantic_map, semantic_probabilities, topk_after_nms
from .prompts import PromptBatch, is_sentence, split_prompts
from .vit_sfp import ViTSimpleFeaturePyramid
from .vl_encoder import VLDeformableEncoder

__all__ = ['APE', 'APEOutput', 'APECriterion', 'APEPostProcessor', 'BiAttentionBlock',
           'PromptBatch', 'VLDeformableEncoder', 'is_sentence', 'semantic_map',
           'semantic_probabilities', 'split_prompts', 'topk_after_nms', 'ViTSimpleFeaturePyramid']
