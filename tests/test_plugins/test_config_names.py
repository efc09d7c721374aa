"""Configs named ``<plugin>::<path>``: on the command line, in ``_base_`` and ``{{_base_.x}}``,
and the errors for an unknown plugin, a disabled one and a missing file."""
import importlib.metadata
import sys
import types

import pytest
from mmengine.config import Config

from openseg_core.engine.cli import load_config
from openseg_core.plugins import (DISABLE_ENV, PluginManager, PluginNotFoundError, hookimpl,
                                  resolve_config)


def _scopes(node):
    if isinstance(node, dict):
        return ({node['_scope_']} if '_scope_' in node else set()).union(
            *map(_scopes, node.values()))
    if isinstance(node, (list, tuple)):
        return set().union(*map(_scopes, node))
    return set()


def test_bases_by_plugin_scope_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'mine.py').write_text(
        "_base_ = ['openseg_core::_base_/default_runtime.py',\n"
        "          'openseg_core::_base_/models/tiny_shapes_parts.py']\n"
        'backbone = {{_base_.tiny_backbone}}\n'
        'hooks = _base_.custom_hooks\n')
    cfg = Config.fromfile('mine.py')
    assert cfg.backbone.type == 'ResNet' and cfg.backbone.base_channels == 16
    assert [h.type for h in cfg.hooks] == ['VocabularyHook', 'ResumeStateHook']
    assert cfg.default_scope == 'openseg_core'
    # mmengine would tag every dict of a '<scope>::' base with that scope, switching the build
    # to a registry scope it cannot import; openseg's bases are plain files.
    assert not _scopes(cfg.to_dict()) - {None}


def test_core_config_by_name_is_the_packaged_file():
    cfg = load_config('openseg_core::reference/ovseg_tiny_shapes.py')
    assert cfg.filename.endswith('openseg_core/configs/reference/ovseg_tiny_shapes.py')
    assert cfg.work_dir == 'work_dirs/ovseg_tiny_shapes'


def test_unknown_plugin_says_what_to_install():
    with pytest.raises(PluginNotFoundError, match=r"^config 'nosuch::a/b.py' needs plugin "
                       r"'nosuch', which is not installed; install the distribution that "
                       r'provides it \(first-party plugins: `pip install openseg-nosuch`\)$'):
        resolve_config('nosuch::a/b.py')


def test_missing_file_suggests_the_closest_config():
    with pytest.raises(FileNotFoundError, match=r"^config 'openseg_core::reference/ovseg_tiny_"
                       r"shape.py' not found: plugin 'openseg_core' has no reference/ovseg_tiny_"
                       r"shape.py; did you mean 'openseg_core::reference/ovseg_tiny_shapes.py'\?$"):
        resolve_config('openseg_core::reference/ovseg_tiny_shape.py')


def test_missing_base_fails_while_loading(tmp_path):
    (tmp_path / 'mine.py').write_text("_base_ = ['openseg_core::_base_/runtime.py']\n")
    with pytest.raises(FileNotFoundError, match="did you mean 'openseg_core::_base_/default_"):
        Config.fromfile(str(tmp_path / 'mine.py'))


def _plugin_with_configs(name, config_dir):
    module = types.ModuleType(f'fake_{name}_configs_manifest')
    module.openseg_config_dirs = hookimpl(lambda: [config_dir])
    sys.modules[module.__name__] = module
    return importlib.metadata.EntryPoint(name=name, value=module.__name__,
                                         group='openseg.plugins')


def test_plugin_configs_resolve_through_its_hook_unless_disabled(tmp_path, monkeypatch):
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'sub' / 'run.py').write_text('x = 1\n')
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    manager = PluginManager([_plugin_with_configs('zeta', tmp_path)]).load()
    assert manager.resolve_config('zeta::sub/run.py') == str(tmp_path / 'sub' / 'run.py')

    monkeypatch.setenv(DISABLE_ENV, 'zeta')
    manager = PluginManager([_plugin_with_configs('zeta', tmp_path)]).load()
    with pytest.raises(PluginNotFoundError, match=r"^config 'zeta::sub/run.py' needs plugin "
                       r"'zeta', which is installed but disabled by OPENSEG_DISABLE_PLUGINS; "
                       r'enable it or remove it from that variable$'):
        manager.resolve_config('zeta::sub/run.py')
