"""X-Decoder as an openseg plugin (scope ``xdecoder``)."""
__version__ = '0.1.0'
