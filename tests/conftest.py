"""Shared pytest setup: mmdet's default scope, as mmdet's own tools set it before building."""

import pytest
import torch
from mmengine.registry import init_default_scope

import ssd_plugin  # noqa: F401  (registers the plugin's components)

# `make test` runs one pytest-xdist worker per core: more intra-op threads only oversubscribe.
torch.set_num_threads(1)
init_default_scope('mmdet')


@pytest.fixture(autouse=True)
def _mmdet_scope():
    """Every test starts in mmdet's scope: a Runner built with another scope stays current."""
    init_default_scope('mmdet')
