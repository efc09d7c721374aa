"""openseg: open-vocabulary, language-aware segmentation on mmengine/mmdet."""
__version__ = '0.1.0'
