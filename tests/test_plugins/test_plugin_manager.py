"""Plugin discovery, filtering and errors, with entry points given in-process."""
import importlib.metadata
import sys
import types

import pytest

from openseg_core.plugins import (ALLOW_ENV, DISABLE_ENV, PluginManager, PluginNotFoundError,
                                  check_config_types, hookimpl)
from openseg_core.registry import plugin_registries


def _fake_plugin(name):
    module = types.ModuleType(f'fake_{name}_manifest')
    registries = plugin_registries(name)

    def openseg_plugin_info():
        return dict(name=name, version='1.2.3', requires=['scipy'])

    def openseg_register_modules():
        if f'{name}.Thing' not in registries.MODELS:  # registering twice would raise
            registries.MODELS.register_module(name='Thing', module=type('Thing', (), {}))

    module.openseg_plugin_info = hookimpl(openseg_plugin_info)
    module.openseg_register_modules = hookimpl(openseg_register_modules)
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
    assert {'openseg', 'alpha', 'beta', 'gamma'} <= set(manager.records)
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
    assert manager.records['openseg'].enabled  # the core is never filtered out


def test_missing_plugin_error_names_what_to_install(entry_points):
    manager = PluginManager(entry_points).load()
    check_config_types(dict(model=dict(type='alpha.Thing')), manager)
    with pytest.raises(PluginNotFoundError, match=r'openseg-xdecoder.*pip install -e '
                                                  r'plugins/xdecoder'):
        check_config_types(dict(model=dict(head=dict(type='xdecoder.XDecoderHead'))), manager)


def test_disabled_plugin_error_says_it_is_disabled(entry_points, monkeypatch):
    monkeypatch.setenv(DISABLE_ENV, 'alpha')
    manager = PluginManager(entry_points).load()
    with pytest.raises(PluginNotFoundError, match='disabled'):
        check_config_types(dict(type='alpha.Thing'), manager)


def test_duplicate_registration_fails_loudly():
    registry = plugin_registries('dupcheck').MODELS
    registry.register_module(name='Once', module=type('Once', (), {}))
    with pytest.raises(KeyError, match='already registered'):
        registry.register_module(name='Once', module=type('Once', (), {}))
