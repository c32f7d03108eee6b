"""Packaging for ssd_plugin.

`pip install .` copies `configs/` and `tools/` into `ssd_plugin/.mim/`, which is where
`mim train ssd_plugin <config>` looks for them (the mmdet / mmyolo convention). An editable
install cannot serve mim: its installed location is site-packages, not this checkout.
"""

import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))
MIM_FOLDERS = ('configs', 'tools')


def read_version() -> str:
    """Read `__version__` without importing the package (and so torch)."""
    scope: dict = {}
    with open(osp.join(HERE, 'ssd_plugin', 'version.py'), encoding='utf-8') as f:
        exec(f.read(), scope)
    return scope['__version__']


def read_requirements(name: str) -> list:
    with open(osp.join(HERE, 'requirements', name), encoding='utf-8') as f:
        lines = (line.split('#')[0].strip() for line in f)
        return [line for line in lines if line]


def add_mim_extension() -> None:
    """Copy (wheel, sdist) or link (develop) `configs/` and `tools/` into `ssd_plugin/.mim`."""
    if 'develop' in sys.argv or 'editable_wheel' in sys.argv:
        mode = 'symlink'
    elif any(cmd in sys.argv for cmd in ('sdist', 'bdist_wheel', 'install', 'build')):
        mode = 'copy'
    else:
        return
    mim_root = osp.join(HERE, 'ssd_plugin', '.mim')
    os.makedirs(mim_root, exist_ok=True)
    for name in MIM_FOLDERS:
        src, dst = osp.join(HERE, name), osp.join(mim_root, name)
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim_root), dst, target_is_directory=True)
        else:
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__'))


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='ssd_plugin',
        version=read_version(),
        description='SSD (Single Shot MultiBox Detector) components for MMDetection 3.x',
        long_description=open(osp.join(HERE, 'README.md'), encoding='utf-8').read(),
        long_description_content_type='text/markdown',
        license='Apache-2.0',
        python_requires='>=3.10',
        # ssd_plugin_cli: the tools' parsers and error reporting, importable without torch
        packages=find_packages(include=('ssd_plugin', 'ssd_plugin.*', 'ssd_plugin_cli')),
        include_package_data=True,
        package_data={'ssd_plugin': ['.mim/configs/**/*', '.mim/tools/**/*']},
        install_requires=read_requirements('runtime.txt'),
        extras_require={'tests': read_requirements('tests.txt')},
        zip_safe=False,
    )
