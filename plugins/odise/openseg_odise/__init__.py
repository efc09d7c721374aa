"""ODISE as an openseg plugin (scope ``odise``)."""
__version__ = '0.1.0'
