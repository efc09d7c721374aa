"""The generic layer every model family uses: the model base, the vocabulary and the
frozen-part convention."""
from .frozen import SOURCE_KEY, FrozenPartsMixin, file_sha256
from .model import OpenSegModel
from .vocabulary import NoVocabularyError, Vocabulary

__all__ = ['OpenSegModel', 'Vocabulary', 'NoVocabularyError', 'FrozenPartsMixin',
           'file_sha256', 'SOURCE_KEY']
