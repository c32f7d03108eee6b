"""Pure geometry of SSD's patch sampling (paper Sec. 2.2, "Data augmentation").

Caffe's ``SampleBBox`` / ``SatisfySampleConstraint`` / ``MeetEmitConstraint`` (``bbox_util.cpp``),
and torchvision's ``RandomIoUCrop`` patch geometry, vectorised over all trials of a sampler: every
function takes ``(P, 4)`` patches and ``(G, 4)`` boxes, ``xyxy`` in pixels, and works on whole
arrays without Python loops.
"""

from typing import Optional, Sequence, Tuple, Union

import numpy as np

#: How a trial's patch size is drawn: Caffe's side scale and aspect ratio, or torchvision's two
#: independent side scales with the aspect ratio checked afterwards.
PATCH_MODES = ('caffe', 'torchvision')

__all__ = [
    'PATCH_MODES',
    'sample_patches',
    'sample_torchvision_patches',
    'patch_box_iou',
    'centres_in_patches',
    'acceptable_patches',
    'choose_patch',
]


def sample_patches(
    num: int,
    width: int,
    height: int,
    scale_range: Tuple[float, float],
    aspect_ratio_range: Tuple[float, float],
    rng=np.random,
) -> np.ndarray:
    """Draw ``num`` candidate patches as Caffe's ``SampleBBox`` does, snapped to whole pixels.

    In coordinates normalised by the image size: side scale ``s ~ U(scale_range)``, aspect ratio
    ``a = clip(U(aspect_ratio_range), s^2, 1 / s^2)`` (the clamp keeps the patch in the image),
    patch ``w = s * sqrt(a)``, ``h = s / sqrt(a)``, offsets ``x ~ U(0, 1 - w)`` and
    ``y ~ U(0, 1 - h)``.
    The pixel patch is ``[floor(x W), floor(x W) + max(1, floor(w W)))`` (clipped to the image), so
    the IoUs computed on it are those of the pixels actually cropped.

    Args:
        num: Number of candidates.
        width: Image width in pixels.
        height: Image height in pixels.
        scale_range: Side scale bounds ``(min, max)`` in ``(0, 1]`` (Caffe: ``(0.3, 1)``).
        aspect_ratio_range: Aspect ratio bounds ``(min, max)`` (Caffe: ``(0.5, 2)``).
        rng: Object with numpy's ``uniform(low, high, size)``; defaults to the global numpy RNG,
            which mmengine seeds per worker.

    Returns:
        ``(num, 4)`` int64 ``xyxy`` patches with ``x2 > x1`` and ``y2 > y1`` inside the image.
    """
    scale = rng.uniform(scale_range[0], scale_range[1], size=num)
    # Caffe draws the ratio in the range, then clamps it so the patch fits in the image.
    aspect = np.clip(rng.uniform(*aspect_ratio_range, size=num), scale**2, 1.0 / scale**2)
    patch_w = np.minimum(scale * np.sqrt(aspect), 1.0)
    patch_h = np.minimum(scale / np.sqrt(aspect), 1.0)
    x1 = np.floor(rng.uniform(0.0, 1.0 - patch_w) * width)
    y1 = np.floor(rng.uniform(0.0, 1.0 - patch_h) * height)
    x1 = np.minimum(x1, width - 1)
    y1 = np.minimum(y1, height - 1)
    x2 = np.minimum(x1 + np.maximum(np.floor(patch_w * width), 1), width)
    y2 = np.minimum(y1 + np.maximum(np.floor(patch_h * height), 1), height)
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.int64)


def sample_torchvision_patches(
    num: int,
    width: int,
    height: int,
    scale_range: Tuple[float, float],
    aspect_ratio_range: Tuple[float, float],
    rng=np.random,
) -> Tuple[np.ndarray, np.ndarray]:
    """Draw ``num`` trials of torchvision's ``RandomIoUCrop``: the patch and whether it is usable.

    Per trial: width and height scales ``r_w, r_h ~ U(scale_range)`` drawn apart, patch size
    ``w = floor(W r_w)``, ``h = floor(H r_h)`` in pixels; the trial is dropped unless
    ``aspect_ratio_range[0] <= w / h <= aspect_ratio_range[1]`` (the ratio of the pixel sizes,
    not normalised to the image) and the patch is not empty; offsets ``left = floor((W - w) u)``,
    ``top = floor((H - h) v)`` with ``u, v ~ U(0, 1)``. A dropped trial still counts against the
    sampler's trials, as in torchvision's loop.

    Args:
        num: Number of trials.
        width: Image width in pixels.
        height: Image height in pixels.
        scale_range: Bounds of each side's scale (torchvision's ``min_scale``, ``max_scale``:
            ``(0.3, 1)``).
        aspect_ratio_range: Bounds of ``w / h`` (torchvision's ``min_aspect_ratio``,
            ``max_aspect_ratio``: ``(0.5, 2)``).
        rng: Object with numpy's ``uniform(low, high, size)``; see :func:`sample_patches`.

    Returns:
        ``(patches, usable)``: ``(num, 4)`` int64 ``xyxy`` patches inside the image and ``(num,)``
        bool, False for the trials torchvision drops before looking at the boxes.
    """
    scales = rng.uniform(scale_range[0], scale_range[1], size=(num, 2))
    patch_w = np.floor(width * scales[:, 0])
    patch_h = np.floor(height * scales[:, 1])
    # an empty side makes the ratio 0 or undefined: such trials are dropped either way
    aspect = patch_w / np.maximum(patch_h, 1)
    usable = (
        (patch_w >= 1)
        & (patch_h >= 1)
        & (aspect >= aspect_ratio_range[0])
        & (aspect <= aspect_ratio_range[1])
    )
    x1 = np.floor((width - patch_w) * rng.uniform(0.0, 1.0, size=num))
    y1 = np.floor((height - patch_h) * rng.uniform(0.0, 1.0, size=num))
    patches = np.stack([x1, y1, x1 + patch_w, y1 + patch_h], axis=1).astype(np.int64)
    return patches, usable


def patch_box_iou(patches: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Jaccard overlap of every patch with every box (paper Eq. 1's ``IoU``), ``(P, G)``.

    Degenerate boxes (zero or negative size) get overlap 0 and never a NaN: the union is at least
    the patch area, which is positive.
    """
    patches = patches.astype(np.float64)
    boxes = boxes.astype(np.float64)
    inter_w = np.minimum(patches[:, None, 2], boxes[None, :, 2]) - np.maximum(
        patches[:, None, 0], boxes[None, :, 0]
    )
    inter_h = np.minimum(patches[:, None, 3], boxes[None, :, 3]) - np.maximum(
        patches[:, None, 1], boxes[None, :, 1]
    )
    inter = np.clip(inter_w, 0, None) * np.clip(inter_h, 0, None)
    patch_area = (patches[:, 2] - patches[:, 0]) * (patches[:, 3] - patches[:, 1])
    box_area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(
        boxes[:, 3] - boxes[:, 1], 0, None
    )
    return inter / (patch_area[:, None] + box_area[None, :] - inter)


def centres_in_patches(patches: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Whether each box's centre lies in each patch, borders included (Caffe's ``CENTER`` emit).

    Returns:
        ``(P, G)`` bool.
    """
    cx = (boxes[:, 0] + boxes[:, 2]) * 0.5
    cy = (boxes[:, 1] + boxes[:, 3]) * 0.5
    return (
        (cx[None] >= patches[:, None, 0])
        & (cx[None] <= patches[:, None, 2])
        & (cy[None] >= patches[:, None, 1])
        & (cy[None] <= patches[:, None, 3])
    )


def acceptable_patches(
    patches: np.ndarray,
    boxes: np.ndarray,
    min_iou: Union[float, np.ndarray],
    constraint: str = 'any',
) -> np.ndarray:
    """Which patches a sampler accepts.

    A patch is accepted when its jaccard overlap with the boxes meets ``min_iou`` (``'any'``: at
    least one box, as Caffe's ``SatisfySampleConstraint``; ``'all'``: every box, as mmdet's
    ``MinIoURandomCrop``) and at least one box centre lies in it, so the crop keeps an object.
    Without boxes every patch is accepted (a background crop).

    Args:
        patches: ``(P, 4)`` candidate patches.
        boxes: ``(G, 4)`` ground-truth boxes.
        min_iou: IoU bound, one for all patches or ``(P,)``; ``0`` is no bound (the "any patch"
            sampler).
        constraint: ``'any'`` or ``'all'``.

    Returns:
        ``(P,)`` bool.
    """
    if len(boxes) == 0:
        return np.ones(len(patches), dtype=bool)
    meets = patch_box_iou(patches, boxes) >= np.reshape(min_iou, (-1, 1))
    accepted = meets.all(axis=1) if constraint == 'all' else meets.any(axis=1)
    return accepted & centres_in_patches(patches, boxes).any(axis=1)


def choose_patch(
    width: int,
    height: int,
    boxes: np.ndarray,
    min_ious: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
    max_trials: int = 50,
    scale_range: Tuple[float, float] = (0.3, 1.0),
    aspect_ratio_range: Tuple[float, float] = (0.5, 2.0),
    constraint: str = 'any',
    rng=np.random,
    whole_image: bool = True,
    unconstrained: bool = True,
    patch_mode: str = 'caffe',
) -> Tuple[int, Optional[np.ndarray]]:
    """SSD's patch choice: whole image, a patch with min IoU ``t`` for each ``t``, or any patch.

    Exactly Caffe's ``GenerateBatchSamples`` with ``ssd_pascal.py``'s samplers: every sampler
    draws ``max_trials`` patches and keeps its first accepted one; one member of the pool (the
    whole image and the samplers that found a patch) is picked uniformly, so a sampler that fails
    all its trials hands its share to the others. All trials are drawn and tested in one pass.

    ``whole_image`` and ``unconstrained`` leave those two members out of the pool (a Caffe
    ``batch_sampler`` list without them, or torchvision's ``RandomIoUCrop`` without the options
    1.0 and 0.0). If then no sampler finds a patch, the whole image is returned, as Caffe does
    when no batch sampler succeeds (torchvision would retry forever).

    Args:
        width, height: Image size.
        boxes: ``(G, 4)`` ground-truth boxes (may be empty).
        min_ious: IoU bounds of the constrained samplers (paper: 0.1, 0.3, 0.5, 0.7, 0.9).
        max_trials: Candidate patches per sampler (Caffe: 50).
        scale_range, aspect_ratio_range: See :func:`sample_patches` /
            :func:`sample_torchvision_patches`.
        constraint: ``'any'`` (Caffe) or ``'all'`` (mmdet); see :func:`acceptable_patches`.
        rng: numpy-like RNG (``uniform``, ``randint``).
        whole_image: Keep the whole image in the uniform draw (Caffe's first, empty sampler).
        unconstrained: Add the sampler without IoU bound (Caffe's ``max_jaccard_overlap: 1``).
        patch_mode: ``'caffe'`` (:func:`sample_patches`) or ``'torchvision'``
            (:func:`sample_torchvision_patches`; its dropped trials are never accepted).

    Returns:
        ``(mode, patch)``: mode ``0`` is the whole image (patch ``None``), mode ``k`` in
        ``1..len(min_ious)`` the sampler with bound ``min_ious[k - 1]``, mode ``len(min_ious) + 1``
        the unconstrained sampler; ``patch`` is ``(4,)`` int64 ``xyxy``.
    """
    if patch_mode not in PATCH_MODES:
        raise ValueError(f'patch_mode must be one of {PATCH_MODES}, got {patch_mode!r}')
    bounds = np.array([*min_ious, 0.0] if unconstrained else list(min_ious), dtype=np.float64)
    sample = sample_torchvision_patches if patch_mode == 'torchvision' else _caffe_trials
    num = len(bounds) * max_trials
    patches, usable = sample(num, width, height, scale_range, aspect_ratio_range, rng)
    accepted = usable & acceptable_patches(
        patches, boxes, np.repeat(bounds, max_trials), constraint
    )
    accepted = accepted.reshape(len(bounds), max_trials)
    pool = np.concatenate([[0] if whole_image else [], 1 + np.flatnonzero(accepted.any(axis=1))])
    mode = int(pool[rng.randint(len(pool))]) if len(pool) else 0  # an empty pool: whole image
    if mode == 0:
        return 0, None
    return mode, patches.reshape(len(bounds), max_trials, 4)[mode - 1, accepted[mode - 1].argmax()]


def _caffe_trials(num, width, height, scale_range, aspect_ratio_range, rng):
    """:func:`sample_patches` as :func:`sample_torchvision_patches` returns: every trial usable."""
    patches = sample_patches(num, width, height, scale_range, aspect_ratio_range, rng)
    return patches, np.ones(num, dtype=bool)
