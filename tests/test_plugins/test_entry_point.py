"""The example plugin, installed with pip, is discovered through its real entry point."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / 'example_plugin'


@pytest.fixture(scope='module')
def installed_example(tmp_path_factory):
    target = tmp_path_factory.mktemp('site')
    # setuptools builds in the source folder: build a copy, keep the checkout clean.
    source = shutil.copytree(EXAMPLE, tmp_path_factory.mktemp('src') / EXAMPLE.name)
    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps',
                    '--no-build-isolation', '--target', str(target), str(source)],
                   check=True, capture_output=True)
    return target


def _run(code, target, cwd=None, **env):
    import os
    full_env = dict(os.environ, PYTHONPATH=str(target), **env)
    full_env.pop('OPENSEG_PLUGINS', None) if 'OPENSEG_PLUGINS' not in env else None
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          env=full_env, check=False, cwd=cwd)


def test_installed_plugin_is_discovered_and_builds(installed_example):
    code = ('from openseg_core.plugins import get_plugin_manager\n'
            'from openseg_core.registry import MODELS\n'
            'm = get_plugin_manager()\n'
            'print(m.records["example"].registered)\n'
            'print(MODELS.build(dict(type="example.ScaledHead", scale=3.0)).scale)\n')
    result = _run(code, installed_example)
    assert result.returncode == 0, result.stderr
    assert "'MODELS': ['example.ScaledHead']" in result.stdout
    assert result.stdout.strip().endswith('3.0')


def test_installed_plugin_config_loads_by_its_name_from_any_directory(installed_example,
                                                                      tmp_path):
    code = ('from openseg_core.engine.cli import load_config\n'
            'from openseg_core.registry import MODELS\n'
            'cfg = load_config("example::scaled_head.py")\n'
            'print(cfg.filename)\n'
            'print(cfg.default_scope, MODELS.build(cfg.model).scale)\n')
    result = _run(code, installed_example, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    filename, built = result.stdout.strip().splitlines()[-2:]
    # The wheel's package data, not the source tree the test installed from.
    assert filename == str(installed_example / 'openseg_example' / 'configs' / 'scaled_head.py')
    assert built == 'openseg_core 3.0'


def test_openseg_plugins_lists_it_and_the_allow_list_hides_it(installed_example):
    cli = 'from openseg_core.cli import main; main(["plugins"])'
    listed = _run(cli, installed_example)
    assert listed.returncode == 0, listed.stderr
    assert 'example 0.0.1 [openseg-example]: enabled' in listed.stdout
    assert 'openseg_core 0.1.0 [openseg]: enabled' in listed.stdout
    assert 'models: example.ScaledHead' in listed.stdout
    # The core's hooks are imported by the CLI before the core registers: still listed.
    assert 'hooks: ResumeStateHook, VocabularyHook' in listed.stdout
    hidden = _run(cli, installed_example, OPENSEG_PLUGINS='')
    assert 'example 0.0.1 [openseg-example]: disabled (not in OPENSEG_PLUGINS)' in hidden.stdout
