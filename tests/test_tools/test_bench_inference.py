"""tools/benchmarks/bench_inference.py's trained-like regime (the script itself runs in
test_benchmarks.py through gpu_report.sh --quick; no test times anything)."""

import os.path as osp
import sys

import torch
import torch.nn as nn
from tool_runner import TOOLS

sys.path.insert(0, osp.join(TOOLS, 'benchmarks'))  # the scripts import their modules by name

import bench_inference  # noqa: E402


def test_make_trained_like_sets_every_logit_channels_mean_and_std():
    """Two levels, 2 boxes x (3 classes + background last): after the rescaling, on the same
    inputs, each channel has mean 0 (background 5) and std 2, and the convs are the same
    objects (rescaled in place)."""
    torch.manual_seed(0)
    levels = nn.ModuleList([nn.Sequential(nn.Conv2d(6, 6, 3, groups=6), nn.Conv2d(6, 8, 1)),
                            nn.Sequential(nn.Conv2d(6, 8, 3, padding=1))])  # fmt: skip
    feats = [torch.randn(4, 6, 5, 5) * 3 + 1, torch.randn(4, 6, 2, 2)]
    convs = [bench_inference.last_conv(level) for level in levels]
    assert convs == [levels[0][1], levels[1][0]]

    def net():
        return [level(f) for level, f in zip(levels, feats)]

    bench_inference.make_trained_like(convs, columns=4, background=3, net=net)
    with torch.no_grad():
        for out in net():
            mean, std = out.mean((0, 2, 3)), out.std((0, 2, 3))
            target = torch.tensor([0.0, 0, 0, 5] * 2)
            torch.testing.assert_close(mean, target, rtol=0, atol=1e-4)
            torch.testing.assert_close(std, torch.full_like(std, 2), rtol=1e-4, atol=0)
