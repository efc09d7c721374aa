"""Errors about user data, phrased as what is wrong and what to do."""
import os


class DatasetError(ValueError):
    """A dataset file is missing, malformed or inconsistent."""


def require_file(path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise DatasetError(f'{what} not found: {path} (generate the shapes dataset with '
                           '`openseg shapes DIR` or fix data_root/ann_file in the config)')
