"""PixelLLM for openseg: a language model that points at every word it says."""
__version__ = '0.1.0'
