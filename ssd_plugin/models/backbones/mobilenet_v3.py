"""MobileNetV3 (Howard et al., ICCV 2019) as SSDLite's base network, torchvision's layers."""

from typing import Tuple

from mmcv.cnn import build_norm_layer
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptMultiConfig
from mmengine.model import BaseModule
from torch import Tensor, nn
from torchvision.models import mobilenet_v3_large, mobilenet_v3_small

__all__ = ['MobileNetV3']

_BUILDERS = {'large': mobilenet_v3_large, 'small': mobilenet_v3_small}


@MODELS.register_module()
class MobileNetV3(BaseModule):
    """torchvision's ``mobilenet_v3_{arch}().features`` with SSDLite's two outputs.

    The layers, and so the state-dict keys (``features.{i}...``), are torchvision's, so its
    ImageNet weights load with ``init_cfg=dict(type='Pretrained', checkpoint=...)`` (their
    ``classifier.*`` keys are ignored) when ``reduced_tail=False``, the classification model.

    Outputs, as torchvision's SSDLite feature extractor (MobileNetV3 paper Sec. 6.3):

    - C4: the output of the 1x1 expansion layer of the last stride-2 block (``features[c4]``,
      with ``c4 = self.c4_index``), stride 16 (large: 672 channels);
    - C5: the output of the last layer (the 1x1 conv to ``6 x`` the last block's channels),
      stride 32 (large: 960, or 480 with ``reduced_tail``).

    Args:
        arch: ``'large'`` or ``'small'``.
        reduced_tail: Halve the channels of the last stage (paper Table 6), as torchvision's
            ``ssdlite320_mobilenet_v3_large`` does when it has no ImageNet backbone, which is
            how its published COCO weights were trained.
        width_mult: Channel multiplier.
        norm_cfg: Norm layer of every conv; SSDLite's default is torchvision's
            ``BatchNorm2d(eps=0.001, momentum=0.03)``.
        init_cfg: Default: normal(std 0.03) convs with zero bias, as torchvision's SSDLite
            without an ImageNet backbone; BN weights 1, biases 0.

    Returns from ``forward``: ``(C4, C5)``.
    """

    def __init__(
        self,
        arch: str = 'large',
        reduced_tail: bool = True,
        width_mult: float = 1.0,
        norm_cfg: ConfigType = dict(type='BN', eps=0.001, momentum=0.03),
        init_cfg: OptMultiConfig = [
            dict(type='Normal', layer='Conv2d', std=0.03),
            dict(type='Constant', layer='BatchNorm2d', val=1),
        ],
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if arch not in _BUILDERS:
            raise ValueError(f'MobileNetV3: arch must be one of {sorted(_BUILDERS)}, got {arch!r}')
        self.features = _BUILDERS[arch](
            weights=None,
            reduced_tail=reduced_tail,
            width_mult=width_mult,
            norm_layer=lambda channels: build_norm_layer(norm_cfg, channels)[1],
        ).features
        # torchvision's SSDLite split point: the last block that halves the resolution, found
        # by its convs' strides (torchvision marks it with a private flag, ``_is_cn``); a
        # stride-2 block has no residual, so its layers can be run apart.
        self.c4_index = max(
            i
            for i, layer in enumerate(self.features)
            if hasattr(layer, 'block')
            and any(m.stride != (1, 1) for m in layer.modules() if isinstance(m, nn.Conv2d))
        )
        self.out_channels = (
            self.features[self.c4_index].block[0].out_channels,
            self.features[-1].out_channels,
        )

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """Return C4 (expansion layer of the last stride-2 block) and C5 (last layer)."""
        for layer in self.features[: self.c4_index]:
            x = layer(x)
        c4_layers = self.features[self.c4_index].block
        c4 = c4_layers[0](x)
        x = c4
        for layer in [*c4_layers[1:], *self.features[self.c4_index + 1 :]]:
            x = layer(x)
        return c4, x
