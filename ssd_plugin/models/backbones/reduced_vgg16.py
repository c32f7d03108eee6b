"""The SSD base network: VGG16 with reduced, convolutional fc6 and fc7 (paper Sec. 3)."""

import os.path as osp
import warnings
from typing import Dict, List, Sequence, Tuple, Union

import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.utils import OptMultiConfig
from mmengine.model import BaseModule
from torch import Tensor

__all__ = ['ReducedVGG16', 'LAYER_NAMES', 'VGG16_SEQUENTIAL_INDICES']

# (output channels, number of 3x3 convs) of VGG16's five stages (Simonyan & Zisserman, config D).
_VGG16_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))

#: Every layer of the network in forward order; ``out_indices`` index into this tuple.
LAYER_NAMES: Tuple[str, ...] = tuple(
    name
    for stage, (_, num_convs) in enumerate(_VGG16_STAGES, start=1)
    for name in [f'conv{stage}_{i}' for i in range(1, num_convs + 1)] + [f'pool{stage}']
) + ('fc6', 'fc7')

#: Index of each convolution in the flat ``nn.Sequential`` (conv, ReLU, ..., pool) layout used by
#: mmdet's ``SSDVGG.features``, torchvision's ``vgg16().features`` (up to conv5_3) and
#: ssd.pytorch's ``vgg16_reducedfc.pth``; the converters translate ``f'{index}.weight'`` to
#: ``f'{name}.weight'`` with it.
VGG16_SEQUENTIAL_INDICES: Dict[str, int] = {
    'conv1_1': 0, 'conv1_2': 2,
    'conv2_1': 5, 'conv2_2': 7,
    'conv3_1': 10, 'conv3_2': 12, 'conv3_3': 14,
    'conv4_1': 17, 'conv4_2': 19, 'conv4_3': 21,
    'conv5_1': 24, 'conv5_2': 26, 'conv5_3': 28,
    'fc6': 31, 'fc7': 33,
}  # fmt: skip


@MODELS.register_module()
class ReducedVGG16(BaseModule):
    """VGG16 as the SSD base network (paper Sec. 3; Caffe's ``VGG_ILSVRC_16_layers_fc_reduced``).

    Layers, each convolution followed by a ReLU:

    - ``conv1_1`` ... ``conv5_3``: the 13 3x3 (padding 1) convolutions of VGG16;
    - ``pool1`` ... ``pool4``: 2x2 max pooling, stride 2, **ceil mode** (as Caffe rounds up);
    - ``pool5``: 3x3 max pooling, stride 1, padding 1 (keeps the size; VGG's is 2x2/2);
    - ``fc6``: 3x3 convolution, dilation 6, padding 6, 512 -> 1024 (the "atrous" fc6);
    - ``fc7``: 1x1 convolution, 1024 -> 1024.

    Sizes: for an input side ``S`` (any ``S >= 1``, height and width independently), ceil-mode
    pooling gives ``ceil(S / 2)`` after ``pool1``, ``ceil(S / 4)`` after ``pool2``, ``ceil(S / 8)``
    after ``pool3`` (so at conv4_3) and ``ceil(S / 16)`` after ``pool4`` (at conv5_3, fc6 and fc7),
    since nested ``ceil(ceil(S / a) / b) == ceil(S / (a * b))`` for integers. SSD300: conv4_3 is
    38x38x512 (floor mode would give 37) and fc7 19x19x1024; SSD512: 64 and 32.

    Args:
        out_indices: Layers whose (post-ReLU) outputs are returned, by name from ``LAYER_NAMES``
            or by index into it, in forward order. Defaults to conv4_3 and fc7, SSD's first two
            source layers.
        init_cfg: Initialisation. The default is Kaiming (He) normal on every conv with zero
            bias, as mmdet's SSDVGG: it keeps the activation variance through the 15 stacked ReLU
            convs when training from scratch. SSD itself starts from ImageNet weights, e.g.
            ``dict(type='Pretrained', checkpoint='vgg16_reduced.pth')`` with a file written by
            ``tools/model_converters/*_to_reduced.py`` (keys ``conv1_1.weight`` ... without a
            ``backbone.`` prefix; add ``prefix='backbone.'`` to load from a detector checkpoint).
        allow_scratch: When a ``Pretrained`` ``init_cfg`` names a local file that does not
            exist, warn and train from scratch (Kaiming) instead of raising. Defaults to False:
            SSD from scratch does not reach the published accuracy.

    Returns from ``forward``: a tuple with one tensor per ``out_indices`` entry.
    """

    def __init__(
        self,
        out_indices: Sequence[Union[int, str]] = ('conv4_3', 'fc7'),
        init_cfg: OptMultiConfig = dict(type='Kaiming', layer='Conv2d'),
        allow_scratch: bool = False,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.allow_scratch = allow_scratch
        self.out_names = self._resolve_out_indices(out_indices)
        # Every layer is built (checkpoints load whatever out_indices is); forward stops early.
        self._forward_names = LAYER_NAMES[: LAYER_NAMES.index(self.out_names[-1]) + 1]

        in_channels = 3
        for stage, (channels, num_convs) in enumerate(_VGG16_STAGES, start=1):
            for i in range(1, num_convs + 1):
                conv = nn.Conv2d(in_channels, channels, kernel_size=3, padding=1)
                self.add_module(f'conv{stage}_{i}', conv)
                in_channels = channels
            self.add_module(f'pool{stage}', nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
        self.pool5 = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.fc6 = nn.Conv2d(512, 1024, kernel_size=3, padding=6, dilation=6)
        self.fc7 = nn.Conv2d(1024, 1024, kernel_size=1)

    @staticmethod
    def _resolve_out_indices(out_indices: Sequence[Union[int, str]]) -> Tuple[str, ...]:
        if isinstance(out_indices, (int, str)) or len(out_indices) == 0:
            raise ValueError(
                f'out_indices must be a non-empty sequence of layer names or indices, '
                f'got {out_indices!r}'
            )
        names: List[str] = []
        for entry in out_indices:
            if isinstance(entry, str) and entry in LAYER_NAMES:
                names.append(entry)
            elif isinstance(entry, int) and 0 <= entry < len(LAYER_NAMES):
                names.append(LAYER_NAMES[entry])
            else:
                raise ValueError(
                    f'out_indices entry {entry!r} is neither a layer name nor an index in '
                    f'[0, {len(LAYER_NAMES)}) of ReducedVGG16 layers {LAYER_NAMES}'
                )
        positions = [LAYER_NAMES.index(name) for name in names]
        if any(a >= b for a, b in zip(positions, positions[1:])):
            raise ValueError(
                f'out_indices must name distinct layers in forward order, got {out_indices!r}'
            )
        return tuple(names)

    def init_weights(self) -> None:
        """Initialise; a missing ``Pretrained`` local file is an error naming the converters.

        The configs point at a converted VGG16 the user makes (docs/pretrained.md).
        With ``allow_scratch=True`` a missing file warns and the network starts from Kaiming
        init instead.

        Raises:
            FileNotFoundError: The file is missing and ``allow_scratch`` is False.
        """
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            checkpoint = str(cfg.get('checkpoint', ''))
            if '://' not in checkpoint and not osp.isfile(osp.expanduser(checkpoint)):
                missing = (
                    f'ReducedVGG16: the pretrained checkpoint {checkpoint!r} '
                    f'(model.backbone.init_cfg.checkpoint) does not exist'
                )
                if not self.allow_scratch:
                    raise FileNotFoundError(
                        f'{missing}. Convert ImageNet VGG16 weights into it '
                        f'(docs/pretrained.md):\n  python tools/model_converters/'
                        f'torchvision_vgg16_to_reduced.py vgg16-397923af.pth {checkpoint}\n  '
                        f'python tools/model_converters/caffe_vgg16_reducedfc_to_reduced.py '
                        f'vgg16_reducedfc.pth {checkpoint}\nor train from scratch (SSD then '
                        f'falls short of the published accuracy) with --cfg-options '
                        f'model.backbone.allow_scratch=True'
                    )
                warnings.warn(f'{missing}; training from scratch with Kaiming init '
                              f'(allow_scratch=True)', stacklevel=2)  # fmt: skip
                self.init_cfg = dict(type='Kaiming', layer='Conv2d')
        super().init_weights()

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """Run the layers up to the last requested one and return the requested outputs."""
        outs = []
        for name in self._forward_names:
            x = getattr(self, name)(x)
            if not name.startswith('pool'):
                x = F.relu(x, inplace=True)
            if name in self.out_names:
                outs.append(x)
        return tuple(outs)
