"""Plugin discovery and loading (pluggy), in the manner of pytest and simonw/llm.

Plugins announce a manifest module through the ``openseg.plugins`` entry-point group. Loading
is idempotent. Because an entry point runs third-party code at start-up, two environment
variables control what is imported at all:

``OPENSEG_PLUGINS``          comma-separated allow-list of entry-point names; when set (even
                             empty) no other third-party plugin is imported.
``OPENSEG_DISABLE_PLUGINS``  comma-separated names never imported.

The core itself is loaded through the same path as the built-in plugin ``openseg_core``. One
name means one plugin everywhere: its entry-point name is its registry scope, the ``name`` its
``openseg_plugin_info()`` gives, and the scope of its configs (``xdecoder::<config>``).
"""
import difflib
import importlib.metadata
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import pluggy

from . import hookspecs
from .hookspecs import PROJECT_NAME, hookimpl

ENTRY_POINT_GROUP = 'openseg.plugins'
ALLOW_ENV = 'OPENSEG_PLUGINS'
DISABLE_ENV = 'OPENSEG_DISABLE_PLUGINS'
#: The core's registry scope (``openseg_core.registry.SCOPE``, not imported here: it pulls in
#: mmdet), which is also the name of its built-in plugin.
BUILTIN_NAME = 'openseg_core'
#: Scopes that name libraries below openseg rather than plugins.
LIBRARY_SCOPES = frozenset({'mmdet', 'mmengine', 'mmcv', 'mmpretrain', 'mmseg'})
#: Separates a plugin's name from a config path relative to its config directories.
CONFIG_SCOPE_SEP = '::'
#: A source checkout keeps its first-party plugins here.
CHECKOUT_PLUGINS = Path(__file__).resolve().parents[2] / 'plugins'

__all__ = ['hookimpl', 'PluginRecord', 'PluginManager', 'PluginNotFoundError', 'PluginNameError',
           'get_plugin_manager', 'load_plugins', 'check_config_types', 'resolve_config']


class PluginNotFoundError(KeyError):
    """A config names a component whose plugin is not installed or not enabled."""

    def __str__(self):
        return self.args[0]


class PluginNameError(ValueError):
    """A plugin's entry-point name, declared name and registry scope disagree."""


def _install_hint(scope: str) -> str:
    """How to install the plugin named ``scope``, without a list of plugins: first-party ones
    are distributions named ``openseg-<scope>``, in ``plugins/<scope>`` of a source checkout."""
    source = CHECKOUT_PLUGINS / scope
    if (source / 'pyproject.toml').is_file():
        return f'install it with `pip install -e {source}`'
    return (f'install the distribution that provides it (first-party plugins: '
            f'`pip install openseg-{scope}`)')


def _unavailable(scope: str, record: Optional['PluginRecord']) -> str:
    """Why plugin ``scope`` cannot be used, and what to do: the end of an error line."""
    if record is not None and not record.enabled:
        return (f"needs plugin '{scope}', which is installed but {record.reason}; enable it "
                f'or remove it from that variable')
    return f"needs plugin '{scope}', which is not installed; {_install_hint(scope)}"


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
    """Per core registry: its names, its children's as ``'<scope>.<name>'`` and each child
    scope itself as ``'<scope>.'`` (a plugin may create one without registering into it)."""
    from openseg_core.registry import CORE_REGISTRIES
    snapshot = {}
    for attr, registry in CORE_REGISTRIES.items():
        names = set(registry._module_dict)
        for scope, child in registry._children.items():
            names |= {f'{scope}.'} | {f'{scope}.{name}' for name in child._module_dict}
        snapshot[attr] = names
    return snapshot


def _snapshot_scope(entry: str) -> str:
    scope, sep, _ = entry.partition('.')
    return scope if sep else BUILTIN_NAME


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
        self._add(BUILTIN_NAME, builtin, PluginRecord(BUILTIN_NAME, distribution='openseg'))

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
            self._add(ep.name, ep.load(), record)
        return self

    def _add(self, name: str, module, record: PluginRecord):
        self._pm.register(module, name=name)
        info = {}
        if hasattr(module, 'openseg_plugin_info'):
            info = module.openseg_plugin_info() or {}
        origin = f' (distribution {record.distribution})' if record.distribution else ''
        if info.get('name', name) != name:
            raise PluginNameError(
                f"plugin entry point '{name}'{origin} calls itself '{info['name']}' in "
                f'openseg_plugin_info(); the entry-point name, that name and the registry scope '
                f'must be the same: rename one of them')
        record.version = info.get('version', record.version)
        record.requires = list(info.get('requires', []))
        record.description = info.get('description', '')
        if hasattr(module, 'openseg_register_modules'):
            before = _registry_snapshot()
            module.openseg_register_modules()
            added = {attr: names - before[attr] for attr, names in _registry_snapshot().items()}
            stray = sorted({_snapshot_scope(entry) for entries in added.values()
                            for entry in entries} - {name})
            if stray:
                raise PluginNameError(
                    f"plugin entry point '{name}'{origin} registers into registry scope "
                    f"'{stray[0]}', not its own; register with "
                    f"openseg_core.registry.plugin_registries('{name}') or rename the entry "
                    f'point so that its name and its registry scope are the same')
            # The diff misses what was imported before the hook ran (the core's hooks are,
            # by the tools), so the scope's own registries are listed too.
            own = _scope_names(name)
            registered = {attr: {e for e in entries if not e.endswith('.')} | own.get(attr, set())
                          for attr, entries in added.items()}
            record.registered = {attr: sorted(n) for attr, n in registered.items() if n}
        self.records[name] = record

    def enabled_scopes(self) -> set:
        return {name for name, rec in self.records.items() if rec.enabled}

    def config_dirs(self, name: str) -> List[Path]:
        """The config directories of the plugin ``name`` (its ``openseg_config_dirs()``)."""
        hook = getattr(self._pm.get_plugin(name), 'openseg_config_dirs', None)
        return [Path(d) for d in hook()] if hook else []

    def resolve_config(self, config: str) -> str:
        """The file a ``'<plugin>::<path relative to its config directories>'`` name means."""
        scope, _, relative = config.partition(CONFIG_SCOPE_SEP)
        record = self.records.get(scope)
        if record is None or not record.enabled:
            raise PluginNotFoundError(f"config '{config}' {_unavailable(scope, record)}")
        dirs = self.config_dirs(scope)
        for directory in dirs:
            if (directory / relative).is_file():
                return str(directory / relative)
        shipped = sorted(str(p.relative_to(d)) for d in dirs for p in d.rglob('*.py'))
        close = difflib.get_close_matches(relative, shipped, n=1)
        hint = (f"; did you mean '{scope}{CONFIG_SCOPE_SEP}{close[0]}'?" if close else
                f"; its configs are in {', '.join(map(str, dirs))}" if dirs else
                '; it ships no configs')
        raise FileNotFoundError(f"config '{config}' not found: plugin '{scope}' has no "
                                f'{relative}{hint}')

    def checkpoint_converters(self) -> dict:
        converters = {}
        for found in self.hook.openseg_checkpoint_converters():
            converters.update(found)
        return converters

    def benchmarks(self) -> dict:
        """``{name: fn(cfg, args, argv)}`` of every enabled plugin's benchmarks."""
        found = {}
        for suites in self.hook.openseg_benchmarks():
            found.update(suites)
        return found

    def inference_tasks(self) -> dict:
        tasks = {}
        for found in self.hook.openseg_inference_tasks():
            tasks.update(found)
        return tasks


_MANAGER: Optional[PluginManager] = None


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager, loaded on first use; from then on config files may
    name their bases ``'<plugin>::<path>'``."""
    global _MANAGER
    if _MANAGER is None:
        _MANAGER = PluginManager()
        _resolve_plugin_scopes_in_bases()
    return _MANAGER.load()


def resolve_config(config: str) -> str:
    """The file of a config given as a path or as ``'<plugin>::<path>'``."""
    if CONFIG_SCOPE_SEP in config:
        return get_plugin_manager().resolve_config(config)
    return config


def _resolve_plugin_scopes_in_bases() -> None:
    """Make mmengine resolve ``_base_ = ['<plugin>::<path>']`` through the plugin manager.

    mmengine 0.10 knows only its fixed list of OpenMMLab packages there (``MODULE2PACKAGE``,
    configs under ``<package>/.mim/configs``), and it gives every dict with a ``type`` in such
    a base ``_scope_='<scope>'``, which would switch the build to a registry scope
    ``xdecoder`` that mmengine tries to import as ``xdecoder.registry``. openseg's configs
    already name plugin types by scope (``'xdecoder.Name'``), so an openseg scope resolves to
    a file with no scope, like a relative base; other scopes stay mmengine's.
    """
    from mmengine.config import Config
    from mmengine.config.utils import MODULE2PACKAGE
    mmengine_get_cfg_path = Config._get_cfg_path

    def get_cfg_path(cfg_path: str, filename: str):
        scope, sep, _ = cfg_path.partition(CONFIG_SCOPE_SEP)
        manager = get_plugin_manager()
        if sep and (scope in manager.records or scope not in MODULE2PACKAGE):
            return manager.resolve_config(cfg_path), None
        return mmengine_get_cfg_path(cfg_path, filename)

    Config._get_cfg_path = staticmethod(get_cfg_path)


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
        raise PluginNotFoundError(
            f"config type '{type_name}' {_unavailable(scope, manager.records.get(scope))}")
