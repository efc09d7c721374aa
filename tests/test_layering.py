"""The core never imports a plugin package; tools stay thin."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_core_does_not_import_plugins():
    plugin_packages = {p.name for p in (REPO / 'plugins').glob('*/openseg_*') if p.is_dir()}
    plugin_packages |= {'openseg_example'}
    pattern = re.compile(r'^\s*(from|import)\s+(' + '|'.join(plugin_packages) + r')\b', re.M)
    offenders = [str(p) for p in (REPO / 'openseg_core').rglob('*.py')
                 if pattern.search(p.read_text())]
    assert not offenders


def test_no_unsafe_torch_load():
    offenders = [str(p) for p in list((REPO / 'openseg_core').rglob('*.py')) +
                 list((REPO / 'tools').glob('*.py'))
                 if re.search(r'weights_only\s*=\s*False', p.read_text())]
    assert not offenders


def test_plugins_do_not_import_each_other():
    packages = {p.name: p for p in list((REPO / 'plugins').glob('*/openseg_*'))
                + [REPO / 'tests' / 'example_plugin' / 'openseg_example'] if p.is_dir()}
    offenders = []
    for name, package in packages.items():
        others = set(packages) - {name}
        pattern = re.compile(r'^\s*(from|import)\s+(' + '|'.join(others) + r')\b', re.M)
        offenders += [str(p) for p in package.rglob('*.py') if pattern.search(p.read_text())]
    assert not offenders
