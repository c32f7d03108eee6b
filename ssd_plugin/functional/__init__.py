"""Pure, typed SSD math (default boxes, matching, loss, post-processing).

Import from the modules themselves, e.g. ``from ssd_plugin.functional.default_boxes import ...``;
the registered classes in :mod:`ssd_plugin.models` are thin wrappers around these functions.
"""
