"""Errors about user data, phrased as what is wrong and what to do."""
import os


class DatasetError(ValueError):
    """A dataset file is missing, malformed or inconsistent."""


def require_file(path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise DatasetError(f'{what} not found: {path} (generate the shapes dataset with '
                           '`openseg shapes DIR [--train N]`, N as the config\'s comment says, '
                           'or fix data_root/ann_file in the config)')


def read_json(path: str, what: str, backend_args=None):
    """A JSON (or pickle/yaml, by extension) file through mmengine, with the file named in
    the error when it does not parse."""
    from mmengine.fileio import load
    require_file(path, what)
    try:
        return load(path, backend_args=backend_args)
    except ValueError as exc:  # json.JSONDecodeError, and mmengine's unknown extensions
        raise DatasetError(f'{what} {path} is not valid JSON ({exc}); fix or regenerate '
                           'it') from None
