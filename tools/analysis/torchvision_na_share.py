"""Share of torchvision's SSD detections with an unused ("N/A") COCO label, on random logits.

Example (docs/pretrained.md)::

    python tools/analysis/torchvision_na_share.py --images 32

Prints, for torchvision's ssd300_vgg16 and ssdlite320_mobilenet_v3_large, the detections per
image, those with one of the ten N/A labels (which the plugin's torchvision configs do not
report) and their share, next to 10 / 90, its expectation for an untrained head.

torchvision's COCO detectors have 91 class outputs: the background and category ids 1..90, ten of
which no COCO image is annotated with. On logits that are exchangeable across the 90 foreground
channels (an untrained head) every channel is equally likely to win a detection slot, so the ten
take 10 / 90 = 11.1 % of the detections in expectation; :func:`torchvision_na_share` measures it
with torchvision's own default boxes and post-processing. It measures torchvision, nothing of the
plugin, so it lives here rather than in ``ssd_plugin`` (tests import it by path).
"""

import argparse
from typing import Dict, List, Optional

import torch
from torchvision.models.detection import (
    SSD300_VGG16_Weights,
    SSDLite320_MobileNet_V3_Large_Weights,
    ssd300_vgg16,
    ssdlite320_mobilenet_v3_large,
)
from torchvision.models.detection.image_list import ImageList

__all__ = ['TORCHVISION_SSD_MODELS', 'na_channels', 'torchvision_na_share', 'main']

#: torchvision builder and weights enum (for its category names) of each SSD model.
TORCHVISION_SSD_MODELS = {
    'ssd300_vgg16': (ssd300_vgg16, SSD300_VGG16_Weights.COCO_V1),
    'ssdlite320_mobilenet_v3_large': (
        ssdlite320_mobilenet_v3_large,
        SSDLite320_MobileNet_V3_Large_Weights.COCO_V1,
    ),
}


def na_channels(model_name: str) -> torch.Tensor:
    """torchvision's class outputs (labels) named ``'N/A'`` for ``model_name``'s COCO weights."""
    categories = TORCHVISION_SSD_MODELS[model_name][1].meta['categories']
    return torch.tensor([i for i, name in enumerate(categories) if name == 'N/A'])


@torch.no_grad()
def torchvision_na_share(
    model_name: str = 'ssd300_vgg16', num_images: int = 8, seed: int = 0
) -> Dict[str, float]:
    """The share of torchvision's detections with an N/A label, on random logits.

    torchvision's model (random weights, no download) supplies its default boxes, for the feature
    map sizes its network gives, and ``postprocess_detections`` (softmax, score threshold, top-k
    per class, per-class NMS, the per-image cap). Its head outputs are replaced by i.i.d. standard
    normal class logits and box offsets, drawn from a generator seeded with ``seed``.

    Args:
        model_name: A key of :data:`TORCHVISION_SSD_MODELS`.
        num_images: Images (independent draws of every default box's outputs).
        seed: Seed of the logits and offsets.

    Returns:
        ``num_images``, ``detections_per_image`` and ``na_per_image`` (means over the images),
        ``share`` (N/A detections / all detections) and ``expected_share`` (10 / 90: the
        expectation for logits exchangeable across the foreground channels).
    """
    if model_name not in TORCHVISION_SSD_MODELS:
        raise KeyError(
            f'model_name must be one of {sorted(TORCHVISION_SSD_MODELS)}, got {model_name!r}'
        )
    builder, weights = TORCHVISION_SSD_MODELS[model_name]
    model = builder(weights=None, weights_backbone=None).eval()
    height, width = model.transform.fixed_size
    features = model.backbone(torch.zeros(1, 3, height, width))
    images = ImageList(torch.zeros(num_images, 3, height, width), [(height, width)] * num_images)
    anchors = model.anchor_generator(images, list(features.values()))
    num_priors, num_outputs = len(anchors[0]), len(weights.meta['categories'])
    generator = torch.Generator().manual_seed(seed)
    head_outputs = {
        'cls_logits': torch.randn(num_images, num_priors, num_outputs, generator=generator),
        'bbox_regression': torch.randn(num_images, num_priors, 4, generator=generator),
    }
    detections = model.postprocess_detections(head_outputs, anchors, images.image_sizes)
    labels = torch.cat([d['labels'] for d in detections])
    num_na = int(torch.isin(labels, na_channels(model_name)).sum())
    num_foreground = num_outputs - 1
    return dict(
        num_images=num_images,
        detections_per_image=len(labels) / num_images,
        na_per_image=num_na / num_images,
        share=num_na / max(len(labels), 1),
        expected_share=len(na_channels(model_name)) / num_foreground,
    )


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=32, help='images (random draws) per model')
    parser.add_argument('--seed', type=int, default=0, help='seed of the random logits')
    parser.add_argument(
        '--models', nargs='+', default=list(TORCHVISION_SSD_MODELS), choices=TORCHVISION_SSD_MODELS
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # small tensor ops: extra threads only slow a shared machine
    for name in args.models:
        fig = torchvision_na_share(name, args.images, args.seed)
        print(
            f'{name}: {fig["num_images"]} images, {fig["detections_per_image"]:.1f} detections '
            f'per image, {fig["na_per_image"]:.1f} with an N/A label: {100 * fig["share"]:.1f} % '
            f'(expected {100 * fig["expected_share"]:.1f} % = 10 / 90 for an untrained head)'
        )


if __name__ == '__main__':
    main()
