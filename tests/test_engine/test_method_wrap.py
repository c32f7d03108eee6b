"""wrap_method / unwrap_method: one instance's method wrapped for a run, then put back."""

import pytest

from ssd_plugin.engine.method_wrap import is_wrapped, unwrap_method, wrap_method


class _Saver:
    def __init__(self):
        self.calls = []

    def save(self, step, meta=None):
        self.calls.append(('save', step, meta))
        return step


def _logging(log):
    """A wrapper maker that records its call, then delegates."""

    def make(method):
        def wrapper(*args, **kwargs):
            log.append(('wrapper', args, kwargs))
            return method(*args, **kwargs)

        return wrapper

    return make


def test_wraps_one_instance_and_unwraps_to_the_class_method():
    saver, other, log = _Saver(), _Saver(), []
    assert wrap_method(saver, 'save', _logging(log), 'guard')
    assert saver.save(3, meta={'iter': 3}) == 3
    assert log == [('wrapper', (3,), {'meta': {'iter': 3}})]
    assert saver.calls == [('save', 3, {'iter': 3})]
    assert saver.save.__name__ == 'save' and is_wrapped(saver.save, 'guard')
    assert not is_wrapped(other.save, 'guard') and 'save' not in vars(other)  # class untouched

    assert not wrap_method(saver, 'save', _logging(log), 'guard')  # a second time: a no-op
    saver.save(4)
    assert len(log) == 2  # one wrapper, not two

    assert unwrap_method(saver, 'save', 'guard')
    assert 'save' not in vars(saver) and saver.save.__func__ is _Saver.save
    assert not unwrap_method(saver, 'save', 'guard')  # nothing left to take off


def test_unwrap_restores_what_the_instance_held():
    saver, log = _Saver(), []
    own = lambda step, meta=None: -step  # noqa: E731  (an instance attribute set earlier)
    saver.save = own
    wrap_method(saver, 'save', _logging(log), 'guard')
    assert saver.save(5) == -5 and log
    unwrap_method(saver, 'save', 'guard')
    assert saver.save is own


def test_two_tags_stack_and_only_the_outer_comes_off():
    saver, outer_log, inner_log = _Saver(), [], []
    wrap_method(saver, 'save', _logging(inner_log), 'inner')
    wrap_method(saver, 'save', _logging(outer_log), 'outer')
    assert is_wrapped(saver.save, 'inner') and is_wrapped(saver.save, 'outer')
    assert not wrap_method(saver, 'save', _logging(inner_log), 'inner')  # inside: still seen
    saver.save(1)
    assert len(outer_log) == len(inner_log) == 1
    assert not unwrap_method(saver, 'save', 'inner')  # wrapped since by 'outer': stays
    assert unwrap_method(saver, 'save', 'outer') and unwrap_method(saver, 'save', 'inner')
    assert 'save' not in vars(saver)


def test_a_missing_method_is_named():
    with pytest.raises(AttributeError, match=r'_Saver has no method _save_checkpoint_with_step'):
        wrap_method(_Saver(), '_save_checkpoint_with_step', _logging([]), 'guard')
