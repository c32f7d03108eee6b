"""Share of torchvision's SSD detections with an unused ("N/A") COCO label, on random logits.

Example (README, "Pretrained weights")::

    python tools/analysis/torchvision_na_share.py --images 32

Prints, for torchvision's ssd300_vgg16 and ssdlite320_mobilenet_v3_large, the detections per
image, those with one of the ten N/A labels (which the plugin's torchvision configs do not
report) and their share, next to 10 / 90, its expectation for an untrained head
(``ssd_plugin.analysis.torchvision_na_share``).
"""

import argparse
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from ssd_plugin.analysis.na_share import (  # noqa: E402  (the repository root goes first)
    TORCHVISION_SSD_MODELS,
    torchvision_na_share,
)


def main(argv=None) -> None:
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
