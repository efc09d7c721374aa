"""Plugin discovery, filtering, one name per plugin, and errors, with entry points given
in-process."""
import importlib.metadata
import sys
import types

import pytest

from openseg_core.plugins import (ALLOW_ENV, DISABLE_ENV, PluginManager, PluginNameError,
                                  PluginNotFoundError, check_config_types, hookimpl)
from openseg_core.registry import MODELS, SCOPE, plugin_registries


def _fake_plugin(name, info_name=None, registry_scope=None, config_dir=None):
    """An entry point ``name`` whose manifest calls itself ``info_name`` and registers
    ``Thing`` into ``registry_scope`` (both default to ``name``)."""
    module = types.ModuleType(f'fake_{name}_manifest')

    def openseg_plugin_info():
        return dict(name=info_name or name, version='1.2.3', requires=['scipy'])

    def openseg_register_modules():
        scope = registry_scope or name
        registry = MODELS if scope == SCOPE else plugin_registries(scope).MODELS
        thing = f'{name}_thing' if scope == SCOPE else 'Thing'  # the core's names are shared
        if thing not in registry._module_dict:  # registering twice would raise
            registry.register_module(name=thing, module=type(thing, (), {}))

    module.openseg_plugin_info = hookimpl(openseg_plugin_info)
    module.openseg_register_modules = hookimpl(openseg_register_modules)
    if config_dir is not None:
        module.openseg_config_dirs = hookimpl(lambda: [config_dir])
    sys.modules[module.__name__] = module
    return importlib.metadata.EntryPoint(name=name, value=module.__name__,
                                         group='openseg.plugins')


@pytest.fixture
def entry_points(monkeypatch):
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    return [_fake_plugin('alpha'), _fake_plugin('beta')]


def test_loads_builtin_and_entry_points_recording_registrations(entry_points):
    fresh = _fake_plugin('gamma')  # a scope no other test registered into
    manager = PluginManager(entry_points + [fresh]).load()
    assert {SCOPE, 'alpha', 'beta', 'gamma'} <= set(manager.records)
    assert manager.records['alpha'].version == '1.2.3'
    assert manager.records['alpha'].requires == ['scipy']
    assert manager.records['gamma'].registered == {'MODELS': ['gamma.Thing']}
    assert manager.load() is manager  # idempotent


def test_disable_and_allow_list_skip_import(entry_points, monkeypatch):
    monkeypatch.setenv(DISABLE_ENV, 'alpha')
    manager = PluginManager(entry_points).load()
    assert not manager.records['alpha'].enabled
    assert 'disabled' in manager.records['alpha'].reason
    assert manager.records['beta'].enabled

    monkeypatch.delenv(DISABLE_ENV)
    monkeypatch.setenv(ALLOW_ENV, 'beta')
    manager = PluginManager(entry_points).load()
    assert not manager.records['alpha'].enabled
    assert manager.records[SCOPE].enabled  # the core is never filtered out


def test_missing_plugin_error_names_what_to_install(entry_points):
    manager = PluginManager(entry_points).load()
    check_config_types(dict(model=dict(type='alpha.Thing')), manager)
    # A first-party plugin of this checkout, not among the entry points given.
    with pytest.raises(PluginNotFoundError, match=r"^config type 'xdecoder.XDecoderHead' needs "
                       r"plugin 'xdecoder', which is not installed; install it with "
                       r"`pip install -e \S+/plugins/xdecoder`$"):
        check_config_types(dict(model=dict(head=dict(type='xdecoder.XDecoderHead'))), manager)
    with pytest.raises(PluginNotFoundError, match=r'\(first-party plugins: '
                                                  r'`pip install openseg-nosuch`\)$'):
        check_config_types(dict(type='nosuch.Head'), manager)


def test_disabled_plugin_error_says_it_is_disabled(entry_points, monkeypatch):
    monkeypatch.setenv(DISABLE_ENV, 'alpha')
    manager = PluginManager(entry_points).load()
    with pytest.raises(PluginNotFoundError, match='disabled'):
        check_config_types(dict(type='alpha.Thing'), manager)


def test_entry_point_and_info_name_must_agree(entry_points):
    with pytest.raises(PluginNameError, match=r"^plugin entry point 'delta' calls itself "
                       r"'delta_seg' in openseg_plugin_info\(\); the entry-point name, that "
                       r'name and the registry scope must be the same: rename one of them$'):
        PluginManager(entry_points + [_fake_plugin('delta', info_name='delta_seg')]).load()


@pytest.mark.parametrize('scope', ['epsilon_seg', SCOPE])
def test_plugin_must_register_into_its_own_scope(entry_points, scope):
    registers = _fake_plugin('epsilon', registry_scope=scope)
    with pytest.raises(PluginNameError, match=rf"^plugin entry point 'epsilon' registers into "
                       rf"registry scope '{scope}', not its own; register with "
                       rf"openseg_core.registry.plugin_registries\('epsilon'\)"):
        PluginManager(entry_points + [registers]).load()


def test_duplicate_registration_fails_loudly():
    registry = plugin_registries('dupcheck').MODELS
    registry.register_module(name='Once', module=type('Once', (), {}))
    with pytest.raises(KeyError, match='already registered'):
        registry.register_module(name='Once', module=type('Once', (), {}))
