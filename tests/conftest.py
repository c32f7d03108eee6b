"""Shared pytest setup: mmdet's default scope, as mmdet's own tools set it before building."""

from mmengine.registry import init_default_scope

import ssd_plugin  # noqa: F401  (registers the plugin's components)

init_default_scope('mmdet')
