"""APE as an openseg plugin (scope ``ape``)."""
__version__ = '0.1.0'
