"""Config values in a form that compares across configs and with JSON copies."""

__all__ = ['plain']


def plain(value):
    """Dicts and lists (tuples become lists) without the ``_scope_`` keys ``mmdet::`` bases add."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if k != '_scope_'}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
