"""Caption text processing for ODISE's caption supervision."""
from .noun_phrases import NounPhraseExtractor, tokenize

__all__ = ['NounPhraseExtractor', 'tokenize']
