"""ODISE's mask embedding and classifiers."""
from .category_head import CategoryHead
from .objectness_head import ObjectnessHead
from .pooled_mask_embed import PooledMaskEmbed, hard_mask_pool
from .synonym_region_ensemble import SynonymRegionEnsemble
from .synonyms import merge_synonyms, split_synonyms
from .word_head import WordHead

__all__ = ['CategoryHead', 'ObjectnessHead', 'PooledMaskEmbed', 'WordHead', 'SynonymRegionEnsemble', 'hard_mask_pool',
           'merge_synonyms', 'split_synonyms']
