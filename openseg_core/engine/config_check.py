"""Checks a config before anything is built or written, so mistakes fail in one line."""
import difflib
import inspect
from typing import Dict, Iterator, List, Set, Tuple

import mmengine.registry as mmengine_registry
from mmengine.registry import Registry

from openseg_core.plugins import PluginManager, _iter_types, check_config_types


class ConfigError(ValueError):
    """The config names something that does not exist."""


def _walk(registry: Registry) -> Iterator[Registry]:
    yield registry
    for child in registry._children.values():
        yield from _walk(child)


#: Keys the builders take out of a typed dict before calling the type: mmengine's (scope,
#: optimizer-wrapper constructor) and mmcv's ``build_norm_layer`` (``requires_grad``).
BUILDER_KEYS = {'type', '_scope_', 'constructor', 'paramwise_cfg', 'requires_grad'}


def registered_types() -> Dict[str, list]:
    """``{name: [class or function, ...]}`` of every registry of the mmengine tree (mmdet's,
    openseg's...); a name may be registered by several libraries (mmcv's and mmdet's Resize)."""
    found: Dict[str, list] = {}
    for value in vars(mmengine_registry).values():
        if isinstance(value, Registry):
            for registry in _walk(value):
                registry.import_from_location()
                for name, obj in registry._module_dict.items():
                    if obj not in found.setdefault(name, []):
                        found[name].append(obj)
    return found


def known_type_names() -> Set[str]:
    """Every name registered in any registry of the mmengine tree."""
    return set(registered_types())


def _typed_dicts(node, path: str = '') -> Iterator[Tuple[str, dict]]:
    if isinstance(node, dict):
        if isinstance(node.get('type'), str):
            yield path, node
        for key, value in node.items():
            yield from _typed_dicts(value, f'{path}.{key}' if path else str(key))
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from _typed_dicts(value, f'{path}.{index}')


def _parameters(obj) -> List[str]:
    """The keyword names ``obj`` takes, or ``[]`` if it takes any (``**kwargs``)."""
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return []
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return []
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def check_options(cfg_dict: dict, types: Dict[str, list]) -> None:
    """Raise a one-line error for a key that the type of its dict does not take (a typo in the
    config or in ``--cfg-options``), which mmengine reports only when it builds that part."""
    for path, node in _typed_dicts(cfg_dict):
        candidates = types.get(node['type'].rpartition('.')[2], [])
        accepted = [_parameters(obj) for obj in candidates]
        if not candidates or any(not names for names in accepted):
            continue
        for key in node:
            if key in BUILDER_KEYS or any(key in names for names in accepted):
                continue
            names = sorted({n for names in accepted for n in names} - {'self'})
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f'it takes: {", ".join(names)}'
            raise ConfigError(f"config key {path}.{key}: {node['type']} has no option "
                              f"'{key}'; {hint}")


def check_config(cfg, manager: PluginManager) -> None:
    """Raise a one-line error for an unknown plugin scope or an unregistered type name."""
    check_config_types(cfg, manager)
    cfg_dict = cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg)
    types = registered_types()
    for type_name in _iter_types(cfg_dict):
        name = type_name.rpartition('.')[2]
        known = types
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ''
            raise ConfigError(f"config type '{type_name}' is not registered by openseg, its "
                              f'plugins, mmdet or mmengine{hint}')
    check_options(cfg_dict, types)
