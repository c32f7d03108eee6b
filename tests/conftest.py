"""Shared pytest setup: mmdet's default scope, as mmdet's own tools set it before building."""

import os

import pytest
import torch
from mmdet.visualization import DetLocalVisualizer
from mmengine.registry import init_default_scope
from mmengine.visualization import Visualizer

import ssd_plugin  # noqa: F401  (registers the plugin's components)

# `make test` runs one pytest-xdist worker per core: more intra-op threads only oversubscribe.
torch.set_num_threads(1)
# ... and the tools' CpuThreadsHook keeps it so (it respects an explicit OMP_NUM_THREADS)
os.environ.setdefault('OMP_NUM_THREADS', '1')
init_default_scope('mmdet')


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Every test, and the module fixtures it sets up first, starts as a fresh process would.

    mmengine keeps process-wide instances: a Runner built with another scope stays the current
    scope, and a later mmdet Runner gets its existing 'visualizer' back without making it the
    current one, so DetVisualizationHook would draw with an earlier test's plain Visualizer.
    """
    init_default_scope('mmdet')
    for manager in (Visualizer, DetLocalVisualizer):
        manager._instance_dict.clear()
