"""The head's ``test_cfg``: one reader, its defaults and its checks, for PyTorch and ONNX.

:meth:`MultiBoxHead.predict_by_feat`, :meth:`MultiBoxHead.decode` and the ONNX post-processing
(:mod:`ssd_plugin.deploy.onnx_postprocess`) read the settings here, so a setting means the same
and is refused for the same reason on every path. Keys are mmdet's; a key the head does not
read is an error (a misspelt ``score_threshold`` would otherwise be ignored).
"""

from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Dict, Mapping, Optional, Union

__all__ = ['DEFAULT_TEST_CFG', 'InferenceCfg', 'read_test_cfg']

# What a ``test_cfg`` without these keys means: keep every score, no per-class cap, mmdet's 200
# detections per image, no size filter.
DEFAULT_TEST_CFG: Dict[str, Union[float, int]] = dict(
    score_thr=0.0, nms_pre=-1, max_per_img=200, min_bbox_size=-1
)
_KEYS = ('score_thr', 'nms', 'nms_pre', 'max_per_img', 'min_bbox_size')


@dataclass(frozen=True)
class InferenceCfg:
    """A checked ``test_cfg``.

    Attributes:
        score_thr: Scores at or below it are dropped (``[0, 1)``).
        iou_thr: Per-class NMS IoU threshold; None: no NMS (no ``nms`` key).
        nms_pre: Candidates per image and class before NMS; -1: all.
        max_per_img: Detections per image (>= 1).
        min_bbox_size: Boxes not wider and taller than it score 0; negative: no filter.
    """

    score_thr: float
    iou_thr: Optional[float]
    nms_pre: int
    max_per_img: int
    min_bbox_size: float


def _number(cfg: Mapping, key: str, integer: bool = False) -> Any:
    value = cfg.get(key, DEFAULT_TEST_CFG.get(key))
    kinds = Integral if integer else Real
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = 'an integer' if integer else 'a number'
        raise ValueError(f'test_cfg.{key} must be {kind}, got {value!r}')
    return value


def _iou_thr(nms: Any) -> Optional[float]:
    if nms is None:
        return None
    if not isinstance(nms, Mapping) or 'iou_threshold' not in nms:
        raise ValueError(f'test_cfg.nms must be dict(type="nms", iou_threshold=...), got {nms!r}')
    if nms.get('type', 'nms') != 'nms':
        raise ValueError(
            f"test_cfg.nms: only type='nms' (greedy, per class) is supported, got {nms['type']!r}"
        )
    iou = nms['iou_threshold']
    if isinstance(iou, bool) or not isinstance(iou, Real) or not 0 <= iou <= 1:
        raise ValueError(f'test_cfg.nms.iou_threshold must be in [0, 1], got {iou!r}')
    return float(iou)


def read_test_cfg(cfg: Optional[Mapping], need_nms: bool = False) -> InferenceCfg:
    """Check a ``test_cfg`` and fill in :data:`DEFAULT_TEST_CFG`.

    Args:
        cfg: mmdet's ``test_cfg`` keys: ``score_thr``, ``nms=dict(type='nms',
            iou_threshold=...)``, ``nms_pre``, ``max_per_img``, ``min_bbox_size``.
        need_nms: The caller always runs NMS (the ONNX graph): ``nms`` is required.

    Returns:
        The settings.

    Raises:
        ValueError: No config, a key the head does not read, or a value out of its range; the
            message names the key.
    """
    if cfg is None:
        raise ValueError(
            'MultiBoxHead inference needs a test_cfg (score_thr, nms, nms_pre, max_per_img); '
            'set model.test_cfg in the config'
        )
    if not isinstance(cfg, Mapping):
        raise ValueError(f'test_cfg must be a dict, got {type(cfg).__name__}')
    unknown = sorted(set(cfg) - set(_KEYS))
    if unknown:
        raise ValueError(
            f'test_cfg has keys MultiBoxHead does not read: {unknown} (it reads {_KEYS})'
        )
    score_thr = float(_number(cfg, 'score_thr'))
    if not 0 <= score_thr < 1:
        raise ValueError(f'test_cfg.score_thr must be >= 0 and < 1, got {score_thr}')
    nms_pre = _number(cfg, 'nms_pre', integer=True)
    if nms_pre < 1 and nms_pre != -1:
        raise ValueError(f'test_cfg.nms_pre must be >= 1, or -1 for no cap, got {nms_pre}')
    max_per_img = _number(cfg, 'max_per_img', integer=True)
    if max_per_img < 1:
        raise ValueError(f'test_cfg.max_per_img must be >= 1, got {max_per_img}')
    iou_thr = _iou_thr(cfg.get('nms'))
    if need_nms and iou_thr is None:
        raise ValueError('test_cfg.nms=dict(iou_threshold=...) is needed for NMS in ONNX')
    min_size = float(_number(cfg, 'min_bbox_size'))
    return InferenceCfg(score_thr, iou_thr, int(nms_pre), int(max_per_img), min_size)
