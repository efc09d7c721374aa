from .odise import ODISE, CaptionODISE, CategoryODISE

__all__ = ['ODISE', 'CategoryODISE', 'CaptionODISE']
