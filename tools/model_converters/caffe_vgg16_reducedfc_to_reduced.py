"""Convert ssd.pytorch's ``vgg16_reducedfc.pth`` into a ReducedVGG16 backbone checkpoint.

Usage::

    python tools/model_converters/caffe_vgg16_reducedfc_to_reduced.py vgg16_reducedfc.pth \\
        checkpoints/vgg16_reduced_caffe.pth

and in a config ``backbone=dict(type='ReducedVGG16', init_cfg=dict(type='Pretrained',
checkpoint='checkpoints/vgg16_reduced_caffe.pth'))``.

SRC is the state dict of ssd.pytorch's ``vgg`` ``nn.ModuleList``, a port of Caffe's
``VGG_ILSVRC_16_layers_fc_reduced`` (the base network of the paper's released models): keys
``{i}.weight`` / ``{i}.bias`` for the convolutions at sequential indices 0, 2, 5, 7, 10, 12, 14,
17, 19, 21, 24, 26, 28 (conv1_1 ... conv5_3, 3x3), 31 (fc6 as conv6: 1024 x 512 x 3 x 3, used
with dilation 6) and 33 (fc7 as conv7: 1024 x 1024 x 1 x 1); the ReLUs and pools between them
have no parameters. Every tensor is renamed to ReducedVGG16's name
(``VGG16_SEQUENTIAL_INDICES``); DST is a plain state dict without a ``backbone.`` prefix.

Input convention: the weights come from Caffe, so they expect BGR images in 0-255 minus the
ImageNet mean, unscaled. The SSD configs feed mmdet's SSD input, RGB minus the same mean
(123.675, 116.28, 103.53) with std 1, so conv1_1's input channels are reversed (BGR -> RGB);
every other tensor is copied unchanged. The converted backbone therefore expects the configs'
``DetDataPreprocessor(mean=[123.675, 116.28, 103.53], std=[1, 1, 1], bgr_to_rgb=True)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Tuple

from ssd_plugin_cli.errors import run_tool
from ssd_plugin_cli.options import converter_parser

if TYPE_CHECKING:  # torch is imported after the arguments are parsed (a quick --help)
    from torch import Tensor


def _key_map() -> Dict[str, Tuple[str, Tuple[int, ...]]]:
    """SRC key -> (ReducedVGG16 key, expected shape)."""
    import torch

    from ssd_plugin.models.backbones.reduced_vgg16 import VGG16_SEQUENTIAL_INDICES, ReducedVGG16

    with torch.device('meta'):
        ours = ReducedVGG16().state_dict()
    return {
        f'{index}.{param}': (f'{name}.{param}', tuple(ours[f'{name}.{param}'].shape))
        for name, index in VGG16_SEQUENTIAL_INDICES.items()
        for param in ('weight', 'bias')
    }


def convert(state_dict: Dict[str, Tensor], source: str = 'state dict') -> Dict[str, Tensor]:
    """Rename a ``vgg16_reducedfc.pth`` state dict to ReducedVGG16 keys (module docstring).

    Args:
        state_dict: ssd.pytorch ``vgg`` ModuleList layout (``0.weight`` ... ``33.bias``).
        source: Name used in error messages (the file).

    Raises:
        KeyError: A needed key is missing (all missing keys are named).
        ValueError: A tensor has the wrong shape.
    """
    key_map = _key_map()
    missing = [key for key in key_map if key not in state_dict]
    if missing:
        raise KeyError(
            f'{source} is not a vgg16_reducedfc (ssd.pytorch vgg ModuleList) state dict: '
            f'missing keys {missing}'
        )
    out = {}
    for key, (ours, shape) in key_map.items():
        if tuple(state_dict[key].shape) != shape:
            raise ValueError(
                f'{source}: {key} ({ours}) has shape {tuple(state_dict[key].shape)}, '
                f'expected {shape}'
            )
        out[ours] = state_dict[key].clone()
    out['conv1_1.weight'] = out['conv1_1.weight'].flip(1)  # BGR -> RGB input channels
    return out


def main(argv=None) -> None:
    args = converter_parser(
        __doc__.splitlines()[0],
        src_help='vgg16_reducedfc.pth (ssd.pytorch layout)',
        dst_help='output ReducedVGG16 checkpoint (.pth)',
    ).parse_args(argv)
    from ssd_plugin.cli.checkpoint_conversion import converter_main

    # a backbone checkpoint for init_cfg=dict(type='Pretrained'): a bare state dict
    converter_main(convert, args, keep_wrapper=False)


if __name__ == '__main__':
    raise SystemExit(run_tool(main))  # a refusal: one line, no traceback (--debug)
