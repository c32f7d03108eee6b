"""Put a wrapper around one object's method for a run, and take it off again.

Hooks that must act *inside* a call mmengine makes (a save that deletes older files first, an
optimizer update that back-propagates) wrap that method on the one instance the runner uses,
never on its class, so other runners and objects in the process are untouched. The wrapper is an
instance attribute tagged with who put it there: wrapping twice (a second ``before_train`` of the
same runner) is a no-op, and unwrapping puts back exactly what the instance held before.
"""

import functools
from typing import Callable

__all__ = ['is_wrapped', 'unwrap_method', 'wrap_method']

_TAGS = '_ssd_plugin_wrap_tags'  # the tags of every wrapper in a chain, outermost included
_TAG = '_ssd_plugin_wrap_tag'  # the tag of the wrapper itself
_PREVIOUS = '_ssd_plugin_wrap_previous'  # what the instance's own __dict__ held before
_NOTHING = object()  # the instance had no attribute of that name: the class's method showed


def wrap_method(obj: object, name: str, make_wrapper: Callable[[Callable], Callable],
                tag: str) -> bool:  # fmt: skip
    """Replace ``obj.<name>`` by ``make_wrapper(<the bound method>)`` on ``obj`` alone.

    Args:
        obj (object): The instance whose method is wrapped.
        name (str): The method's name.
        make_wrapper (Callable): Takes the bound method (the call to delegate to) and returns
            the function to call instead, with the same arguments.
        tag (str): Who wraps: a method already wrapped with this tag is left as it is.

    Returns:
        bool: Whether a wrapper was put in place (False when ``tag`` had wrapped it already).

    Raises:
        AttributeError: ``obj`` has no callable ``name``; the message names the type and the
            method, so a renamed private method of a dependency fails loudly, not silently.
    """
    method = getattr(obj, name, None)
    if not callable(method):
        raise AttributeError(f'{type(obj).__name__} has no method {name}() to wrap')
    if tag in getattr(method, _TAGS, ()):
        return False
    wrapper = make_wrapper(method)
    functools.update_wrapper(wrapper, method)  # also copies the inner wrapper's tags
    setattr(wrapper, _TAGS, frozenset(getattr(method, _TAGS, ())) | {tag})
    setattr(wrapper, _TAG, tag)
    setattr(wrapper, _PREVIOUS, vars(obj).get(name, _NOTHING))
    setattr(obj, name, wrapper)
    return True


def unwrap_method(obj: object, name: str, tag: str) -> bool:
    """Take off the wrapper :func:`wrap_method` put on ``obj.<name>`` with ``tag``.

    The instance gets back what it held before (usually nothing, so the class's method shows
    again). Only the outermost wrapper can be taken off: one that another wrapper has wrapped
    since stays, and False is returned.

    Returns:
        bool: Whether a wrapper was taken off.
    """
    wrapper = vars(obj).get(name)
    if getattr(wrapper, _TAG, None) != tag:
        return False
    previous = getattr(wrapper, _PREVIOUS)
    if previous is _NOTHING:
        delattr(obj, name)
    else:
        setattr(obj, name, previous)
    return True


def is_wrapped(method: Callable, tag: str) -> bool:
    """Whether ``method`` is, or wraps, a wrapper :func:`wrap_method` made with ``tag``."""
    return tag in getattr(method, _TAGS, ())
