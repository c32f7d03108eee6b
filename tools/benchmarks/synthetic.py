"""Synthetic SSD head outputs, ground truths and images for the benchmarks (seeded, CPU-made).

Head outputs follow the plugin's layout (``docs/design.md``): per level ``(B, k*(C+1), H, W)``
class logits with background last and ``(B, k*4, H, W)`` offsets; a default box's flat index is
level-major, then row, column and box. Score regimes:

- ``trained``: logits ~ N(0, 2^2) with +5 on background, the shape of a trained model's;
- ``untrained``: logits ~ N(0, 0.01^2), a near-uniform softmax: every class score is about
  1 / (C + 1), above 0.01 (all candidates pass the paper's threshold) and below 0.02 (none pass
  mmdet's);
- ``crowded``: ``trained`` plus ``num_objects`` real objects per image (16-96 px, from 5 classes),
  each seen by its 8 best-overlapping default boxes with a high score for its class and offsets
  that point at it: clusters of overlapping high-scoring boxes, hundreds of candidates per class.

Offsets are N(0, 0.5) outside the crowded clusters.
"""

from dataclasses import dataclass, replace
from typing import List, Sequence, Tuple

import cv2
import numpy as np
import torch
from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder
from mmengine.structures import InstanceData
from torch import Tensor
from torchvision.ops import box_iou

REGIMES = ('trained', 'untrained', 'crowded')
CROWD_CLASSES = 5
CLUSTER = 8  # default boxes per crowded object


@dataclass
class HeadInputs:
    """One batch of per-level head outputs with its ground truths and image metas."""

    cls_scores: List[Tensor]
    bbox_preds: List[Tensor]
    gts: List[InstanceData]
    metas: List[dict]

    def to(self, device: str, requires_grad: bool = False) -> 'HeadInputs':
        """A copy on ``device``; with ``requires_grad`` the outputs are fresh leaves."""

        def move(tensors):
            return [t.detach().to(device).requires_grad_(requires_grad) for t in tensors]

        return replace(
            self,
            cls_scores=move(self.cls_scores),
            bbox_preds=move(self.bbox_preds),
            gts=[gt.to(device) for gt in self.gts],
        )


def to_levels(
    flat: Tensor, featmap_sizes: Sequence[Tuple[int, int]], num_base_priors: Sequence[int]
):
    """``(B, P, D)`` per-default-box values to per-level ``(B, k*D, H, W)`` maps."""
    num_imgs, num_priors, depth = flat.shape
    counts = [h * w * k for (h, w), k in zip(featmap_sizes, num_base_priors)]
    if sum(counts) != num_priors:
        raise ValueError(f'{num_priors} default boxes given, the levels hold {sum(counts)}')
    chunks = flat.split(counts, dim=1)
    return [chunk.reshape(num_imgs, h, w, -1).permute(0, 3, 1, 2).contiguous()
            for chunk, (h, w) in zip(chunks, featmap_sizes)]  # fmt: skip


def background_first(level: Tensor, cls_out_channels: int) -> Tensor:
    """A ``(B, k*(C+1), H, W)`` logit map with background moved from last to index 0 per box
    (torchvision's convention)."""
    num_imgs, channels, h, w = level.shape
    boxes = level.view(num_imgs, channels // cls_out_channels, cls_out_channels, h, w)
    return torch.cat([boxes[:, :, -1:], boxes[:, :, :-1]], 2).reshape(num_imgs, channels, h, w)


def random_ground_truths(
    num_imgs: int, size: int, num_classes: int, gen: torch.Generator, max_gts: int = 20
) -> List[InstanceData]:
    """1 to ``max_gts`` plausible boxes (10 to 250 px, inside the image) per image."""
    gts = []
    for _ in range(num_imgs):
        n = int(torch.randint(1, max_gts + 1, (1,), generator=gen))
        centre = torch.rand(n, 2, generator=gen) * size
        wh = 10 + torch.rand(n, 2, generator=gen) * (size * 0.8)
        boxes = torch.cat([centre - wh / 2, centre + wh / 2], 1).clamp(0, size)
        gts.append(
            InstanceData(bboxes=boxes, labels=torch.randint(num_classes, (n,), generator=gen))
        )
    return gts


def random_logits(
    num_imgs: int, num_priors: int, num_classes: int, regime: str, gen: torch.Generator
) -> Tensor:
    """``(B, P, C+1)`` logits of the ``trained`` or ``untrained`` regime (background last)."""
    if regime == 'untrained':
        return torch.randn(num_imgs, num_priors, num_classes + 1, generator=gen) * 0.01
    logits = torch.randn(num_imgs, num_priors, num_classes + 1, generator=gen) * 2
    logits[..., num_classes] += 5
    return logits


def add_crowd(
    logits: Tensor,
    deltas: Tensor,
    priors: Tensor,
    size: int,
    num_objects: int,
    gen: torch.Generator,
) -> None:
    """Put ``num_objects`` objects per image into ``logits``/``deltas`` (in place, see above)."""
    coder = DeltaXYWHBBoxCoder(target_means=(0.0,) * 4, target_stds=(0.1, 0.1, 0.2, 0.2))
    for logit, delta in zip(logits, deltas):
        centre = torch.rand(num_objects, 2, generator=gen) * size
        wh = 16 + torch.rand(num_objects, 2, generator=gen) * 80
        objects = torch.cat([centre - wh / 2, centre + wh / 2], 1).clamp(0, size)
        labels = torch.randint(CROWD_CLASSES, (num_objects,), generator=gen)
        prior_ids = box_iou(objects, priors).topk(CLUSTER, dim=1).indices.flatten()
        object_ids = torch.arange(num_objects).repeat_interleave(CLUSTER)
        boost = 3 + 2 * torch.rand(len(prior_ids), generator=gen)
        logit[prior_ids, labels[object_ids]] = logit[prior_ids].max(1).values + boost
        noise = torch.randn(len(prior_ids), 4, generator=gen) * 0.05
        delta[prior_ids] = coder.encode(priors[prior_ids], objects[object_ids]) + noise


def head_inputs(
    num_imgs: int,
    regime: str,
    priors: Tensor,
    featmap_sizes: Sequence[Tuple[int, int]],
    num_base_priors: Sequence[int],
    num_classes: int,
    size: int,
    seed: int,
    num_objects: int = 300,
) -> HeadInputs:
    """A CPU batch of head outputs of ``regime`` (see the module docstring), 1-20 ground
    truths per image and metas of 640x480 images resized to ``size`` x ``size``."""
    if regime not in REGIMES:
        raise ValueError(f'regime must be one of {REGIMES}, got {regime!r}')
    gen = torch.Generator().manual_seed(seed)
    logits = random_logits(num_imgs, len(priors), num_classes, regime, gen)
    deltas = torch.randn(num_imgs, len(priors), 4, generator=gen) * 0.5
    if regime == 'crowded':
        add_crowd(logits, deltas, priors.cpu(), size, num_objects, gen)
    meta = dict(img_shape=(size, size), pad_shape=(size, size), ori_shape=(480, 640),
                batch_input_shape=(size, size), scale_factor=(size / 640, size / 480))  # fmt: skip
    return HeadInputs(
        cls_scores=to_levels(logits, featmap_sizes, num_base_priors),
        bbox_preds=to_levels(deltas, featmap_sizes, num_base_priors),
        gts=random_ground_truths(num_imgs, size, num_classes, gen),
        metas=[dict(meta) for _ in range(num_imgs)],
    )


def random_images(num: int, seed: int = 0, height: int = 480, width: int = 640) -> List[np.ndarray]:
    """``num`` smooth-textured BGR uint8 images (upsampled noise: not trivially compressible)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (num, 30, 40, 3), dtype=np.uint8)
    return [cv2.resize(s, (width, height), interpolation=cv2.INTER_CUBIC) for s in small]
