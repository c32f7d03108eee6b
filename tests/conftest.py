"""Shared pytest setup: mmdet's default scope, as mmdet's own tools set it before building."""

import pytest
import torch
from mmengine.registry import init_default_scope

import ssd_plugin  # noqa: F401  (registers the plugin's components)

# `make test` runs one pytest-xdist worker per core: more intra-op threads only oversubscribe.
torch.set_num_threads(1)
init_default_scope('mmdet')


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Every test, and the module fixtures it sets up first, starts in mmdet's scope: a Runner
    built with another scope stays the current one."""
    init_default_scope('mmdet')
