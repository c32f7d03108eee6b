"""TRANSFORMS ``MinIoUCrop``: SSD's patch sampling (paper Sec. 2.2, "Data augmentation")."""

from typing import Sequence, Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes, autocast_box_type

from .lazy_canvas import take_pending_canvas
from .patch_geometry import PATCH_MODES, centres_in_patches, choose_patch
from .zoom_out import reject_unsupported_keys

__all__ = ['MinIoUCrop']


@TRANSFORMS.register_module()
class MinIoUCrop(BaseTransform):
    """Crop a random patch: whole image, min-IoU patches or any patch, as Caffe's SSD samplers.

    Caffe's ``GenerateBatchSamples`` with the paper's 7 options: the whole image, patches with
    jaccard overlap at least ``0.1, 0.3, 0.5, 0.7, 0.9`` with the objects, and any patch. Every
    sampler draws ``max_trials`` patches (all samplers' trials drawn and tested in one vectorised
    pass) and keeps its first accepted one; one of the whole image and the samplers that found a
    patch is picked uniformly. So the 7 modes are uniform when every sampler succeeds, a sampler
    whose trials all fail hands its share to the others, and the transform never loops (see
    :func:`~.patch_geometry.choose_patch`). Patches follow Caffe's ``SampleBBox`` (side scale in
    ``scale_range``, aspect ratio in ``aspect_ratio_range``, normalised to the image). A patch is
    accepted only if it also contains a box centre (as mmdet; Caffe may crop away every object);
    without boxes any patch is accepted. The boxes whose centre lies in the patch are kept,
    clipped to it, with their ``instance_keys`` entries.

    The set of samplers in the uniform draw is configurable: ``min_ious`` lists the constrained
    ones, ``whole_image`` and ``unconstrained`` the other two. Caffe's ``batch_sampler`` list of
    ``ssd_pascal.py`` is the default; torchvision's
    ``RandomIoUCrop(sampler_options=[0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0])`` is also the default
    (its option 1.0 is the whole image, 0.0 the unconstrained sampler), and e.g.
    ``sampler_options=[0.5, 0.9]`` is ``MinIoUCrop(min_ious=(0.5, 0.9), whole_image=False,
    unconstrained=False)``. When no sampler in the draw finds a patch the image is left whole,
    as Caffe does (torchvision would retry until one does).

    ``patch_mode`` picks how a trial's patch is drawn: ``'caffe'`` (default; side scale and aspect
    ratio, ``SampleBBox``) or ``'torchvision'`` (``RandomIoUCrop``: width and height scales drawn
    apart in ``scale_range``, the pixel aspect ratio ``w / h`` checked against
    ``aspect_ratio_range`` afterwards, a failing trial spent; see
    :func:`~.patch_geometry.sample_torchvision_patches`). torchvision's recipe is
    ``MinIoUCrop(patch_mode='torchvision', max_trials=40)``. Acceptance is the same in both
    modes; torchvision's differs in two corner cases: its centres must lie strictly inside the
    patch, and the box meeting the IoU bound must be one whose centre is inside.

    After :class:`ZoomOut` the patch is sampled on the (unpainted) canvas and only its window is
    painted, which gives the same pixels and boxes as cropping the painted canvas.

    Differences from mmdet's ``MinIoURandomCrop``: ``constraint='any'`` by default (Caffe: some
    box meets the bound; mmdet: all boxes), Caffe's scale/aspect sampling instead of independent
    sides with rejection (``patch_mode='torchvision'`` has those, torchvision's), offsets from 0
    (mmdet draws them from ``[1, w - new_w]``), centres on the patch border count as inside
    (Caffe), and no endless retry loop.

    Required Keys:

    - img (np.ndarray or the lazy canvas of :class:`ZoomOut`)
    - img_shape
    - gt_bboxes (HorizontalBoxes[torch.float32]) (optional)
    - gt_bboxes_labels (np.int64) (optional)
    - gt_ignore_flags (bool) (optional)

    Modified Keys:

    - img
    - img_shape
    - gt_bboxes
    - gt_bboxes_labels
    - gt_ignore_flags

    Args:
        min_ious: IoU bounds of the constrained samplers.
        max_trials: Trials per sampler (Caffe: 50).
        scale_range: Patch side scale bounds relative to the image (Caffe: ``(0.3, 1)``; the
            paper's text says ``[0.1, 1]``).
        aspect_ratio_range: Patch aspect ratio bounds, normalised to the image (Caffe clamps the
            drawn ratio to ``[s^2, 1 / s^2]`` so the patch fits).
        constraint: ``'any'`` (Caffe) or ``'all'`` (mmdet) box must meet the IoU bound.
        instance_keys: Per-box fields filtered with the boxes (missing ones are skipped).
        whole_image: Keep the whole image as one choice of the uniform draw (Caffe's empty
            sampler, torchvision's option 1.0).
        unconstrained: Add the sampler without IoU bound (Caffe's ``max_jaccard_overlap: 1.0``
            sampler, torchvision's option 0.0).
        patch_mode: ``'caffe'`` or ``'torchvision'`` patch geometry (above).
    """

    def __init__(
        self,
        min_ious: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
        max_trials: int = 50,
        scale_range: Tuple[float, float] = (0.3, 1.0),
        aspect_ratio_range: Tuple[float, float] = (0.5, 2.0),
        constraint: str = 'any',
        instance_keys: Sequence[str] = ('gt_bboxes_labels', 'gt_ignore_flags'),
        whole_image: bool = True,
        unconstrained: bool = True,
        patch_mode: str = 'caffe',
    ) -> None:
        if not all(0 < t <= 1 for t in min_ious):
            raise ValueError(f'MinIoUCrop: min_ious must be in (0, 1], got {min_ious}')
        if not (min_ious or whole_image or unconstrained):
            raise ValueError(
                'MinIoUCrop: no sampler left; give min_ious or set whole_image or unconstrained'
            )
        if max_trials < 1:
            raise ValueError(f'MinIoUCrop: max_trials must be >= 1, got {max_trials}')
        if not 0 < scale_range[0] <= scale_range[1] <= 1:
            raise ValueError(
                f'MinIoUCrop: scale_range must satisfy 0 < min <= max <= 1, got {scale_range}'
            )
        if not 0 < aspect_ratio_range[0] <= aspect_ratio_range[1]:
            raise ValueError(
                f'MinIoUCrop: aspect_ratio_range must satisfy 0 < min <= max, got '
                f'{aspect_ratio_range}'
            )
        if patch_mode not in PATCH_MODES:
            raise ValueError(
                f'MinIoUCrop: patch_mode must be one of {PATCH_MODES}, got {patch_mode!r}'
            )
        if constraint not in ('any', 'all'):
            raise ValueError(f"MinIoUCrop: constraint must be 'any' or 'all', got {constraint!r}")
        self.min_ious = tuple(min_ious)
        self.max_trials = max_trials
        self.scale_range = tuple(scale_range)
        self.aspect_ratio_range = tuple(aspect_ratio_range)
        self.constraint = constraint
        self.instance_keys = tuple(instance_keys)
        self.whole_image = whole_image
        self.unconstrained = unconstrained
        self.patch_mode = patch_mode

    def _check_aligned(self, results: dict, num_boxes: int) -> None:
        for key in self.instance_keys:
            value = results.get(key)
            if value is not None and len(value) != num_boxes:
                raise ValueError(
                    f'MinIoUCrop: {key!r} has {len(value)} entries but gt_bboxes has '
                    f'{num_boxes} (image {results.get("img_path", "?")})'
                )

    @autocast_box_type()
    def transform(self, results: dict) -> dict:
        """Sample a patch and crop; see the class docstring."""
        reject_unsupported_keys(results, 'MinIoUCrop', 'MinIoURandomCrop')
        gt_bboxes = results.get('gt_bboxes')
        if gt_bboxes is not None and not isinstance(gt_bboxes, HorizontalBoxes):
            raise TypeError(f'MinIoUCrop needs HorizontalBoxes, got {type(gt_bboxes).__name__}')
        canvas = take_pending_canvas(results)
        height, width = (canvas if canvas is not None else results['img']).shape[:2]
        boxes = np.zeros((0, 4)) if gt_bboxes is None else gt_bboxes.numpy()
        self._check_aligned(results, len(boxes))
        _, patch = choose_patch(
            width,
            height,
            boxes,
            self.min_ious,
            self.max_trials,
            self.scale_range,
            self.aspect_ratio_range,
            self.constraint,
            whole_image=self.whole_image,
            unconstrained=self.unconstrained,
            patch_mode=self.patch_mode,
        )
        if patch is None:
            return results  # whole image; a pending canvas stays lazy for its next reader
        x1, y1, x2, y2 = (int(v) for v in patch)
        if canvas is not None:
            results['img'] = canvas.paint((x1, y1, x2, y2))
        else:
            results['img'] = results['img'][y1:y2, x1:x2]
        results['img_shape'] = (y2 - y1, x2 - x1)
        if gt_bboxes is not None:
            keep = centres_in_patches(patch[None], boxes)[0]
            # numpy, then one box object: cheaper than BaseBoxes' per-op torch calls.
            shifted = boxes[keep] - np.array([x1, y1, x1, y1], dtype=boxes.dtype)
            size = np.array([x2 - x1, y2 - y1] * 2, dtype=boxes.dtype)
            results['gt_bboxes'] = HorizontalBoxes(np.clip(shifted, 0, size))
            for key in self.instance_keys:
                if results.get(key) is not None:
                    results[key] = results[key][keep]
        return results

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}(min_ious={self.min_ious}, max_trials={self.max_trials}, '
            f'scale_range={self.scale_range}, aspect_ratio_range={self.aspect_ratio_range}, '
            f"constraint='{self.constraint}', instance_keys={self.instance_keys}, "
            f'whole_image={self.whole_image}, unconstrained={self.unconstrained}, '
            f"patch_mode='{self.patch_mode}')"
        )
