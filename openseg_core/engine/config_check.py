"""Checks a config before anything is built or written, so mistakes fail in one line."""
import difflib
from typing import Iterator, Set

import mmengine.registry as mmengine_registry
from mmengine.registry import Registry

from openseg_core.plugins import PluginManager, _iter_types, check_config_types


class ConfigError(ValueError):
    """The config names something that does not exist."""


def _walk(registry: Registry) -> Iterator[Registry]:
    yield registry
    for child in registry._children.values():
        yield from _walk(child)


def known_type_names() -> Set[str]:
    """Every name registered in any registry of the mmengine tree (mmdet's, openseg's...)."""
    names = set()
    for value in vars(mmengine_registry).values():
        if isinstance(value, Registry):
            for registry in _walk(value):
                registry.import_from_location()
                names.update(registry._module_dict)
    return names


def check_config(cfg, manager: PluginManager) -> None:
    """Raise a one-line error for an unknown plugin scope or an unregistered type name."""
    check_config_types(cfg, manager)
    known = None
    for type_name in _iter_types(cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg)):
        name = type_name.rpartition('.')[2]
        known = known or known_type_names()
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ''
            raise ConfigError(f"config type '{type_name}' is not registered by openseg, its "
                              f'plugins, mmdet or mmengine{hint}')
