"""The mask-classification family (Mask2Former-style): pixel decoder -> query decoder ->
class and mask logits per query. See :mod:`.contracts` for the shapes its parts exchange."""
from .classifier_head import CLASSIFICATIONS, TextClassifierHead
from .clip_ensemble import CLIPRegionEnsemble
from .criterion import MaskClassificationCriterion, MaskClassificationOutput
from .postprocessor import MaskPostProcessor
from .query_decoder import MaskedAttentionQueryDecoder, QueryDecoderOutput
from .model import MaskClassificationModel, check_classification
from .segmentor import OpenVocabMaskSegmentor
from .targets import panoptic_targets

__all__ = ['CLASSIFICATIONS', 'TextClassifierHead', 'CLIPRegionEnsemble', 'MaskClassificationCriterion',
           'MaskClassificationOutput', 'MaskPostProcessor', 'MaskedAttentionQueryDecoder',
           'QueryDecoderOutput', 'MaskClassificationModel', 'OpenVocabMaskSegmentor',
           'check_classification', 'panoptic_targets']
