"""Caffe SSD's ``PriorBoxLayer`` (LayerSetUp + Forward_cpu) transcribed loop by loop, as an oracle.

Independent of the plugin: plain Python floats, normalised ``xyxy`` as Caffe outputs them. Caffe
truncates ``min_size``/``max_size`` to ``int``; the oracle keeps them as given, so tests pass whole
pixel sizes (what a prototxt that does not lose precision writes).
"""

import math
from typing import List, Optional, Sequence


def caffe_prior_box(
    layer_hw: Sequence[int],
    img_hw: Sequence[int],
    min_sizes: Sequence[float],
    max_sizes: Optional[Sequence[float]] = None,
    aspect_ratios: Sequence[float] = (),
    flip: bool = True,
    clip: bool = False,
    step_hw: Optional[Sequence[float]] = None,
    offset: float = 0.5,
) -> List[List[float]]:
    """Priors of one ``PriorBox`` layer, ``[xmin, ymin, xmax, ymax] / (img_w, img_h)`` each."""
    ratios = [1.0]
    for ar in aspect_ratios:
        if any(abs(ar - r) < 1e-6 for r in ratios):
            continue
        ratios.append(ar)
        if flip:
            ratios.append(1.0 / ar)
    max_sizes = list(max_sizes or [])
    assert not max_sizes or len(max_sizes) == len(min_sizes)
    layer_h, layer_w = layer_hw
    img_h, img_w = img_hw
    step_h, step_w = step_hw if step_hw else (img_h / layer_h, img_w / layer_w)
    out = []
    for h in range(layer_h):
        for w in range(layer_w):
            cx, cy = (w + offset) * step_w, (h + offset) * step_h
            for s, min_size in enumerate(min_sizes):
                sizes = [(min_size, min_size)]
                if max_sizes:
                    side = math.sqrt(min_size * max_sizes[s])
                    sizes.append((side, side))
                for ar in ratios:
                    if abs(ar - 1.0) < 1e-6:
                        continue
                    sizes.append((min_size * math.sqrt(ar), min_size / math.sqrt(ar)))
                for bw, bh in sizes:
                    out.append(
                        [
                            (cx - bw / 2.0) / img_w,
                            (cy - bh / 2.0) / img_h,
                            (cx + bw / 2.0) / img_w,
                            (cy + bh / 2.0) / img_h,
                        ]
                    )
    if clip:
        out = [[min(max(v, 0.0), 1.0) for v in box] for box in out]
    return out
