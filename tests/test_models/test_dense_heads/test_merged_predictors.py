"""The head's inference-time merged predictors equal its two separate convolutions."""

import copy

import pytest
import torch

from ssd_plugin.models.dense_heads import MultiBoxHead
from ssd_plugin.models.dense_heads.merged_predictors import merged_pair

IN_CHANNELS = (16, 8)
SIZES = ((10, 10), (5, 5))


def _head(**kwargs):
    head = MultiBoxHead(
        num_classes=3,
        in_channels=IN_CHANNELS,
        prior_generator=dict(
            type='DefaultBoxGenerator',
            input_size=40,
            strides=(4, 8),
            ratios=([2], [2, 3]),
            scale_range=(0.2, 0.9),
            scale_mode='paper',
        ),
        **kwargs,
    )
    head.init_weights()
    for p in head.parameters():  # non-zero biases too
        torch.nn.init.normal_(p)
    return head


def _feats(channels_last):
    gen = torch.Generator().manual_seed(0)
    feats = [torch.randn(2, c, *s, generator=gen) for c, s in zip(IN_CHANNELS, SIZES)]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return [f.contiguous(memory_format=fmt) for f in feats]


def _separate(head, feats):
    return ([c(f) for c, f in zip(head.cls_convs, feats)],
            [r(f) for r, f in zip(head.reg_convs, feats)])  # fmt: skip


def _assert_same(got, want):
    for g, w in zip(got[0] + got[1], want[0] + want[1]):
        assert g.shape == w.shape
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('channels_last', [False, True])
def test_eval_forward_equals_the_two_convs(channels_last):
    head = _head().eval()
    feats = _feats(channels_last)
    with torch.no_grad():
        got = head(feats)
        want = _separate(head, feats)
    assert set(head._merged) == {'0', '1'}  # the merged path ran on both levels
    _assert_same(got, want)


def test_weight_changes_and_copies_refresh_the_merged_weights():
    head = _head().eval()
    feats = _feats(True)
    with torch.no_grad():
        head(feats)
        head.reg_convs[1].pred.weight.mul_(-2.0)  # in place, as load_state_dict or a step
        _assert_same(head(feats), _separate(head, feats))
        other = copy.deepcopy(head)
    assert other._merged == {} and 'stacked' not in other.state_dict()
    assert set(other.state_dict()) == set(head.state_dict())


def test_gradients_and_training_use_the_separate_convs():
    head = _head().eval()
    feats = _feats(False)
    head(feats)[0][0].sum().backward()  # autograd records: never merged
    assert head._merged == {}
    assert head.cls_convs[0].pred.weight.grad is not None
    head.train()
    with torch.no_grad():
        head(feats)
    assert head._merged == {}


def test_depthwise_predictors_are_not_merged():
    head = _head(use_depthwise=True, norm_cfg=dict(type='BN'), act_cfg=dict(type='ReLU6'))
    assert merged_pair(head.cls_convs[0], head.reg_convs[0]) is None
    assert merged_pair(*_head().cls_convs[:1], _head().reg_convs[0]) is not None


def test_forward_hooks_still_see_each_conv():
    head = _head().eval()
    feats = _feats(True)
    seen = {}
    head.reg_convs[0].pred.register_forward_hook(lambda m, i, o: seen.setdefault('reg0', o))
    with torch.no_grad():
        got = head(feats)
        want = _separate(head, feats)
    torch.testing.assert_close(seen['reg0'], want[1][0])
    assert set(head._merged) == {'1'}  # the hooked level runs its convs as modules
    _assert_same(got, want)
