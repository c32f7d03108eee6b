"""One writer of COCO-format detection files, shared by every generator of synthetic data.

The demo dataset (:mod:`ssd_plugin.datasets.demo_shapes`), the coverage analysis's synthetic
COCO-sized files (:mod:`ssd_plugin.analysis.synthetic_coco`) and the tests' tiny datasets
(``tests/data_factory.py``) draw their boxes differently; the file they write is this one's.
"""

import json
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

__all__ = ['write_coco']


def write_coco(
    path: str,
    images: Sequence[Tuple[int, str, int, int]],
    categories: Sequence[Tuple[int, str]],
    image_ids: Sequence[int],
    category_ids: Sequence[int],
    bboxes: np.ndarray,
    areas: Optional[Sequence[float]] = None,
    iscrowd: Optional[Sequence[bool]] = None,
    decimals: Optional[int] = None,
    supercategory: Optional[str] = None,
    info: Optional[Dict[str, Any]] = None,
) -> str:
    """Write a COCO detection file; annotation ids are ``1..N`` in the given order.

    Args:
        path: Output json.
        images: ``(id, file_name, width, height)`` of each image.
        categories: ``(id, name)`` of each category.
        image_ids: ``(N,)`` image id of each annotation.
        category_ids: ``(N,)`` category id of each annotation.
        bboxes: ``(N, 4)`` COCO ``[x, y, w, h]`` boxes in pixels.
        areas: ``(N,)`` COCO ``area`` (e.g. the visible pixels); default ``w * h``.
        iscrowd: ``(N,)`` crowd flags; default none.
        decimals: Round boxes and areas to this many decimals (Python's ``round``); default
            as given.
        supercategory: Every category's ``supercategory``; default no such key.
        info: The file's ``info`` entry; default none.

    Returns:
        ``path``.
    """
    bboxes = np.asarray(bboxes, dtype=np.float64).reshape(-1, 4)
    if not len(image_ids) == len(category_ids) == len(bboxes):
        raise ValueError(
            f'write_coco: {len(image_ids)} image ids, {len(category_ids)} category ids and '
            f'{len(bboxes)} boxes; one of each per annotation'
        )
    cats = [dict(id=int(c), name=n) for c, n in categories]
    if supercategory is not None:
        cats = [dict(cat, supercategory=supercategory) for cat in cats]
    coco: Dict[str, Any] = {} if info is None else dict(info=info)
    coco['images'] = [
        dict(id=int(i), file_name=name, width=int(w), height=int(h)) for i, name, w, h in images
    ]
    coco['annotations'] = _annotations(image_ids, category_ids, bboxes, areas, iscrowd, decimals)
    coco['categories'] = cats
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(coco, f)
    return path


def _annotations(image_ids, category_ids, bboxes: np.ndarray, areas, iscrowd, decimals):
    """The ``annotations`` list of :func:`write_coco` (its arguments of the same names)."""
    area_list = (bboxes[:, 2] * bboxes[:, 3]).tolist() if areas is None else list(areas)
    crowd = [0] * len(bboxes) if iscrowd is None else [int(c) for c in iscrowd]
    box_list = bboxes.tolist()
    if decimals is not None:
        box_list = [[round(v, decimals) for v in box] for box in box_list]
        area_list = [round(a, decimals) for a in area_list]
    return [
        dict(
            id=k + 1, image_id=int(img), category_id=int(cat), bbox=box, area=float(area), iscrowd=c
        )  # fmt: skip
        for k, (img, cat, box, area, c) in enumerate(
            zip(image_ids, category_ids, box_list, area_list, crowd)
        )
    ]
