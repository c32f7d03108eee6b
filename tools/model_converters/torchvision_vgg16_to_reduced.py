"""Convert torchvision's ImageNet VGG16 weights into a ReducedVGG16 backbone checkpoint.

Usage::

    python tools/model_converters/torchvision_vgg16_to_reduced.py vgg16-397923af.pth \\
        checkpoints/vgg16_reduced_torchvision.pth

and in a config ``backbone=dict(type='ReducedVGG16', init_cfg=dict(type='Pretrained',
checkpoint='checkpoints/vgg16_reduced_torchvision.pth'))``.

Mapping (SRC is ``torchvision.models.vgg16().state_dict()``, DST has ReducedVGG16's keys, no
``backbone.`` prefix, saved as a plain state dict):

- ``features.{0,2,5,...,28}.{weight,bias}`` -> ``conv1_1`` ... ``conv5_3``, copied unchanged
  (``VGG16_SEQUENTIAL_INDICES``).
- fc6: ``classifier.0.weight`` (4096 x 25088) is viewed as the 7x7 convolution it is on pool5
  (4096 x 512 x 7 x 7, torchvision flattens ``(C, H, W)``) and decimated to ``fc6.weight``
  (1024 x 512 x 3 x 3) = ``w[0::4, :, 0::3, 0::3]``: output filters 0, 4, ..., 4092, all 512
  input channels, taps 0, 3 and 6 of each kernel row and column; ``fc6.bias = b[0::4]``.
- fc7: ``classifier.3.weight`` (4096 x 4096) -> ``fc7.weight`` (1024 x 1024 x 1 x 1) =
  ``w[0::4, 0::4]``: the kept rows are fc7's kept filters, the kept columns are the fc6 filters
  kept above; ``fc7.bias = b[0::4]``.
- ``classifier.6`` (the 1000-way classifier) is dropped.

This is the paper's "we subsample parameters from fc6 and fc7" (Sec. 3), the decimation DeepLab
-LargeFOV used to build ``VGG_ILSVRC_16_layers_fc_reduced``. Why dilation 6: taps 0, 3, 6 are
3 pool5 cells apart at VGG's stride 32; SSD's pool5 (3x3, stride 1) keeps stride 16, where the
same spacing is 6 cells, so the dilated 3x3 fc6 spans the original 7x7 field of view.

The result is not the released Caffe model (different ImageNet training). Input convention:
torchvision's weights expect RGB images scaled as ``(x - mean) / std`` (ImageNet mean
123.675, 116.28, 103.53 and std 58.395, 57.12, 57.375 in 0-255 units). The SSD configs feed
mmdet's SSD input instead, RGB minus the same mean with std 1, so conv1_1's weights are divided
by the std of their input channel: ``conv(W / std, x - mean) == conv(W, (x - mean) / std)``
exactly (zero padding is zero in both). The converted backbone therefore expects the configs'
``DetDataPreprocessor(mean=[123.675, 116.28, 103.53], std=[1, 1, 1], bgr_to_rgb=True)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Tuple

from ssd_plugin_cli.errors import run_tool
from ssd_plugin_cli.options import converter_parser

if TYPE_CHECKING:  # torch is imported after the arguments are parsed (a quick --help)
    from torch import Tensor

FC_KEEP_EVERY = 4  # 4096 -> 1024 filters (fc6 and fc7) and fc7 input channels
TAP_KEEP_EVERY = 3  # 7x7 -> 3x3 taps 0, 3, 6 (hence dilation 6 at stride 16)
IMAGENET_STD_RGB = (58.395, 57.12, 57.375)  # torchvision's normalisation, in 0-255 units


def _source_shapes() -> Dict[str, Tuple[int, ...]]:
    """Shape of every SRC tensor the conversion reads."""
    import torch

    from ssd_plugin.models.backbones.reduced_vgg16 import VGG16_SEQUENTIAL_INDICES, ReducedVGG16

    with torch.device('meta'):
        ours = ReducedVGG16().state_dict()
    shapes = {
        f'features.{index}.{param}': tuple(ours[f'{name}.{param}'].shape)
        for name, index in VGG16_SEQUENTIAL_INDICES.items()
        if name.startswith('conv')
        for param in ('weight', 'bias')
    }
    shapes.update({
        'classifier.0.weight': (4096, 512 * 7 * 7),
        'classifier.0.bias': (4096,),
        'classifier.3.weight': (4096, 4096),
        'classifier.3.bias': (4096,),
    })  # fmt: skip
    return shapes


def convert(state_dict: Dict[str, Tensor], source: str = 'state dict') -> Dict[str, Tensor]:
    """Map a torchvision VGG16 state dict to ReducedVGG16 keys (see the module docstring).

    Args:
        state_dict: ``torchvision.models.vgg16().state_dict()`` layout.
        source: Name used in error messages (the file).

    Raises:
        KeyError: A needed key is missing (all missing keys are named).
        ValueError: A tensor has the wrong shape.
    """
    import torch

    from ssd_plugin.models.backbones.reduced_vgg16 import VGG16_SEQUENTIAL_INDICES

    shapes = _source_shapes()
    missing = [key for key in shapes if key not in state_dict]
    if missing:
        raise KeyError(f'{source} is not a torchvision VGG16 state dict: missing keys {missing}')
    for key, shape in shapes.items():
        if tuple(state_dict[key].shape) != shape:
            raise ValueError(
                f'{source}: {key} has shape {tuple(state_dict[key].shape)}, expected {shape} '
                f'(torchvision VGG16)'
            )

    out = {
        f'{name}.{param}': state_dict[f'features.{index}.{param}'].clone()
        for name, index in VGG16_SEQUENTIAL_INDICES.items()
        if name.startswith('conv')
        for param in ('weight', 'bias')
    }
    std = torch.tensor(IMAGENET_STD_RGB, dtype=out['conv1_1.weight'].dtype)
    out['conv1_1.weight'] /= std[None, :, None, None]  # fold the std into the first conv
    fc6 = state_dict['classifier.0.weight'].reshape(4096, 512, 7, 7)
    out['fc6.weight'] = fc6[::FC_KEEP_EVERY, :, ::TAP_KEEP_EVERY, ::TAP_KEEP_EVERY].contiguous()
    out['fc6.bias'] = state_dict['classifier.0.bias'][::FC_KEEP_EVERY].clone()
    fc7 = state_dict['classifier.3.weight'][::FC_KEEP_EVERY, ::FC_KEEP_EVERY]
    out['fc7.weight'] = fc7[:, :, None, None].contiguous()
    out['fc7.bias'] = state_dict['classifier.3.bias'][::FC_KEEP_EVERY].clone()
    return out


def main(argv=None) -> None:
    args = converter_parser(
        __doc__.splitlines()[0],
        src_help='torchvision VGG16 ImageNet state dict (.pth)',
        dst_help='output ReducedVGG16 checkpoint (.pth)',
    ).parse_args(argv)
    from ssd_plugin.cli.checkpoint_conversion import converter_main

    # a backbone checkpoint for init_cfg=dict(type='Pretrained'): a bare state dict
    converter_main(convert, args, keep_wrapper=False)


if __name__ == '__main__':
    raise SystemExit(run_tool(main))  # a refusal: one line, no traceback (--debug)
