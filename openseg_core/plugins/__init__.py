"""Plugin discovery and loading (pluggy), in the manner of pytest and simonw/llm.

Plugins announce a manifest module through the ``openseg.plugins`` entry-point group. Loading
is idempotent. Because an entry point runs third-party code at start-up, two environment
variables control what is imported at all:

``OPENSEG_PLUGINS``          comma-separated allow-list of entry-point names; when set (even
                             empty) no other third-party plugin is imported.
``OPENSEG_DISABLE_PLUGINS``  comma-separated names never imported.

The core itself is loaded through the same path as the built-in plugin ``openseg``.
"""
import importlib.metadata
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import pluggy

from . import hookspecs
from .hookspecs import PROJECT_NAME, hookimpl

ENTRY_POINT_GROUP = 'openseg.plugins'
ALLOW_ENV = 'OPENSEG_PLUGINS'
DISABLE_ENV = 'OPENSEG_DISABLE_PLUGINS'
BUILTIN_NAME = 'openseg'
#: Scopes that name libraries below openseg rather than plugins.
LIBRARY_SCOPES = frozenset({'openseg', 'openseg_core', 'mmdet', 'mmengine', 'mmcv', 'mmpretrain',
                            'mmseg'})
#: First-party plugins, so that a missing one is named with its distribution.
KNOWN_PLUGINS = {
    'xdecoder': 'openseg-xdecoder',
    'ape': 'openseg-ape',
    'pixelllm': 'openseg-pixelllm',
    'odise': 'openseg-odise',
}

__all__ = ['hookimpl', 'PluginRecord', 'PluginManager', 'PluginNotFoundError',
           'get_plugin_manager', 'load_plugins', 'check_config_types']


class PluginNotFoundError(KeyError):
    """A config names a component whose plugin is not installed or not enabled."""

    def __str__(self):
        return self.args[0]


@dataclass
class PluginRecord:
    """What ``openseg plugins`` shows for one plugin."""
    name: str
    version: str = ''
    distribution: str = ''
    enabled: bool = True
    reason: str = ''
    requires: List[str] = field(default_factory=list)
    description: str = ''
    registered: Dict[str, List[str]] = field(default_factory=dict)


def _names_from_env(var: str) -> Optional[set]:
    value = os.environ.get(var)
    if value is None:
        return None
    return {name.strip() for name in value.split(',') if name.strip()}


def _scope_names(scope: str) -> Dict[str, set]:
    """Names registered in one scope's registries (the core's plain, a plugin's prefixed)."""
    from openseg_core.registry import CORE_REGISTRIES, SCOPE
    names = {}
    for attr, registry in CORE_REGISTRIES.items():
        if scope == SCOPE:
            names[attr] = set(registry._module_dict)
        elif scope in registry._children:
            names[attr] = {f'{scope}.{n}' for n in registry._children[scope]._module_dict}
    return names


def _registry_snapshot() -> Dict[str, set]:
    from openseg_core.registry import CORE_REGISTRIES
    snapshot = {}
    for attr, registry in CORE_REGISTRIES.items():
        names = set(registry._module_dict)
        for scope, child in registry._children.items():
            names |= {f'{scope}.{name}' for name in child._module_dict}
        snapshot[attr] = names
    return snapshot


class PluginManager:
    """Discovers, filters and loads openseg plugins.

    Args:
        entry_points: the entry points to consider; default: those installed in the
            ``openseg.plugins`` group. Tests pass their own.
    """

    def __init__(self, entry_points=None):
        self._pm = pluggy.PluginManager(PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._entry_points = entry_points
        self._loaded = False
        self.records: Dict[str, PluginRecord] = {}

    @property
    def hook(self):
        return self._pm.hook

    def load(self) -> 'PluginManager':
        """Import the enabled plugins and run their registration hooks, once."""
        if self._loaded:
            return self
        self._loaded = True
        from . import builtin
        from openseg_core.registry import SCOPE
        self._add(BUILTIN_NAME, builtin, distribution='openseg', scope=SCOPE)

        allow, deny = _names_from_env(ALLOW_ENV), _names_from_env(DISABLE_ENV) or set()
        eps = self._entry_points
        if eps is None:
            eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        for ep in sorted(eps, key=lambda e: e.name):
            dist = getattr(ep, 'dist', None)
            record = PluginRecord(name=ep.name, distribution=dist.name if dist else '',
                                  version=dist.version if dist else '')
            if ep.name in deny:
                record.enabled, record.reason = False, f'disabled by {DISABLE_ENV}'
            elif allow is not None and ep.name not in allow:
                record.enabled, record.reason = False, f'not in {ALLOW_ENV}'
            if not record.enabled or ep.name in self.records:
                self.records.setdefault(ep.name, record)
                continue
            self._add(ep.name, ep.load(), record=record)
        return self

    def _add(self, name, module, record=None, distribution='', scope=None):
        record = record or PluginRecord(name=name, distribution=distribution)
        self._pm.register(module, name=name)
        info = {}
        if hasattr(module, 'openseg_plugin_info'):
            info = module.openseg_plugin_info() or {}
        record.version = info.get('version', record.version)
        record.requires = list(info.get('requires', []))
        record.description = info.get('description', '')
        if hasattr(module, 'openseg_register_modules'):
            before = _registry_snapshot()
            module.openseg_register_modules()
            after = _registry_snapshot()
            # The diff misses what was imported before the hook ran (the core's hooks are,
            # by the tools); the scope's own registries miss names put in other scopes.
            own = _scope_names(scope or name)
            record.registered = {
                attr: sorted((after[attr] - before[attr]) | own.get(attr, set()))
                for attr in after if (after[attr] - before[attr]) | own.get(attr, set())}
        self.records[name] = record

    def enabled_scopes(self) -> set:
        return {name for name, rec in self.records.items() if rec.enabled}

    def config_dirs(self) -> List[str]:
        return [str(d) for dirs in self.hook.openseg_config_dirs() for d in dirs]

    def checkpoint_converters(self) -> dict:
        converters = {}
        for found in self.hook.openseg_checkpoint_converters():
            converters.update(found)
        return converters

    def inference_tasks(self) -> dict:
        tasks = {}
        for found in self.hook.openseg_inference_tasks():
            tasks.update(found)
        return tasks


_MANAGER: Optional[PluginManager] = None


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager, loaded on first use."""
    global _MANAGER
    if _MANAGER is None:
        _MANAGER = PluginManager()
    return _MANAGER.load()


def load_plugins() -> PluginManager:
    """Alias of :func:`get_plugin_manager` that reads as an action at call sites."""
    return get_plugin_manager()


def _iter_types(node):
    if isinstance(node, dict):
        if isinstance(node.get('type'), str):
            yield node['type']
        for value in node.values():
            yield from _iter_types(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _iter_types(value)


def check_config_types(cfg, manager: Optional[PluginManager] = None) -> None:
    """Raise :class:`PluginNotFoundError` for a ``'<scope>.Name'`` type no enabled plugin has.

    mmengine would otherwise fail deep inside the build with a message about registries; this
    names the plugin to install instead.
    """
    manager = manager or get_plugin_manager()
    available = manager.enabled_scopes() | LIBRARY_SCOPES
    for type_name in _iter_types(dict(cfg)):
        scope, sep, _ = type_name.partition('.')
        if not sep or scope in available:
            continue
        record = manager.records.get(scope)
        dist = KNOWN_PLUGINS.get(scope, f'a package providing the {scope!r} plugin')
        if record is not None and not record.enabled:
            raise PluginNotFoundError(
                f"config type '{type_name}' needs plugin '{scope}', which is installed but "
                f'{record.reason}; enable it or remove it from that variable')
        hint = (f'pip install -e plugins/{scope}' if scope in KNOWN_PLUGINS
                else f'pip install {dist}')
        raise PluginNotFoundError(
            f"config type '{type_name}' needs plugin '{scope}' ({dist}), which is not "
            f'installed; install it with `{hint}`')
