from .multi_task_data_preprocessor import MultiTaskDataPreprocessor

__all__ = ['MultiTaskDataPreprocessor']
