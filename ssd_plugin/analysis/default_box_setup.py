"""The default boxes a config trains with: its ``DefaultBoxGenerator`` and feature-map sizes."""

import copy
import warnings
from typing import List, Optional, Sequence, Tuple, Union

import torch
from mmdet.registry import MODELS, TASK_UTILS
from mmengine.config import Config, ConfigDict
from mmengine.registry import init_default_scope
from torch import Tensor

from ssd_plugin.models.task_modules.default_box_generator import DefaultBoxGenerator

__all__ = [
    'load_config',
    'prior_generator_config',
    'build_prior_generator',
    'network_featmap_sizes',
    'level_priors',
]

_GENERATOR_KEY = 'model.bbox_head.prior_generator'


def load_config(config: Union[str, Config, dict], cfg_options: Optional[dict] = None) -> Config:
    """A config from a path, a ``Config`` or a dict, with ``--cfg-options`` style overrides."""
    if isinstance(config, str):
        cfg = Config.fromfile(config)
    elif isinstance(config, Config):
        cfg = copy.deepcopy(config)
    else:
        cfg = Config(copy.deepcopy(dict(config)))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    return cfg


def prior_generator_config(cfg: Config) -> dict:
    """``model.bbox_head.prior_generator`` as a plain dict; it must be a ``DefaultBoxGenerator``."""
    generator = cfg.get('model', {}).get('bbox_head', {}).get('prior_generator')
    if generator is None:
        raise KeyError(f'the config has no {_GENERATOR_KEY}')
    if TASK_UTILS.get(generator.get('type')) is not DefaultBoxGenerator:
        raise TypeError(
            f'{_GENERATOR_KEY} is {generator.get("type")!r}; the coverage analysis needs a '
            'DefaultBoxGenerator (SSD default boxes, scale_range/ratios)'
        )
    return generator.to_dict() if isinstance(generator, ConfigDict) else dict(generator)


def build_prior_generator(generator_cfg: dict, **overrides) -> DefaultBoxGenerator:
    """Build a ``DefaultBoxGenerator`` from its config with some keys replaced."""
    return TASK_UTILS.build({**generator_cfg, **overrides})


def _strides_featmap_sizes(generator: DefaultBoxGenerator) -> List[Tuple[int, int]]:
    sizes = generator.expected_featmap_sizes(generator.input_size)
    if sizes is None:
        raise ValueError(
            f'cannot infer the feature-map sizes: building the model failed and {_GENERATOR_KEY} '
            'has strides=None; pass featmap_sizes explicitly'
        )
    return sizes


def network_featmap_sizes(cfg: Config, generator: DefaultBoxGenerator) -> List[Tuple[int, int]]:
    """Feature-map sizes the detector feeds its head at the generator's input size.

    Builds ``cfg.model`` (no weights are loaded) and runs ``extract_feat`` on one zero image of
    ``input_size``, so any backbone/neck is measured, not assumed, and checked against the
    default boxes as the head checks them (a mismatch is an error). If the model cannot be built
    or run, falls back (with a warning) to ``ceil(input / stride)`` per level, which holds for
    SSD300/SSD512's VGG (e.g. 300 / 8 -> 38).

    Args:
        cfg: The full config.
        generator: The config's default-box generator.

    Returns:
        ``(H, W)`` per level.
    """
    h, w = generator.input_size
    try:
        model = MODELS.build(cfg.model)
        model.eval()
        with torch.no_grad():
            feats = model.extract_feat(torch.zeros(1, 3, h, w))
        sizes = [tuple(int(v) for v in f.shape[-2:]) for f in feats]
    except Exception as e:  # any build/forward failure: the strides still define the grids
        warnings.warn(
            f'could not run the model to measure its feature maps ({type(e).__name__}: {e}); '
            f'using ceil(input_size / stride) from {_GENERATOR_KEY}.strides',
            stacklevel=2,
        )
        return _strides_featmap_sizes(generator)
    generator.check_featmap_sizes(sizes, (h, w))  # the same check as the head's first forward
    return sizes


def level_priors(
    generator: DefaultBoxGenerator, featmap_sizes: Sequence[Tuple[int, int]]
) -> List[Tensor]:
    """The default boxes of every level on the CPU, float32 (as the head uses them)."""
    return generator.grid_priors(featmap_sizes, dtype=torch.float32, device='cpu')
