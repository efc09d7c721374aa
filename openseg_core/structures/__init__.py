from .data_sample import SAMPLE_FIELDS, OpenSegDataSample

__all__ = ['OpenSegDataSample', 'SAMPLE_FIELDS']
