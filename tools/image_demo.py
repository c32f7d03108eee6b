"""Detect objects in images with a trained detector: drawn PNGs and a JSON of detections each.

INPUTS is an image file, a folder (its images, not recursive) or a glob (``'imgs/**/*.jpg'``,
quoted so that the shell leaves it alone). Inference runs in batches through mmdet's
``DetInferencer`` (the config's test pipeline and ``model.test_step``); boxes are in the pixels of
the original image. For ``photos/a.jpg`` it writes::

    OUT_DIR/vis/a.png     the image with the detections scoring >= --score-thr drawn
    OUT_DIR/preds/a.json  {"image": "photos/a.jpg", "height": h, "width": w, "detections":
                           [{"label": 0, "class": "person", "score": 0.97,
                             "bbox": [x1, y1, x2, y2]}, ...]}   (score >= --score-thr, best first)

Images from different folders are named by their path relative to the inputs' common folder
(``a__b.png`` for ``a/b.jpg``), so none overwrites another. Examples::

    python tools/image_demo.py configs/ssd300_vgg16_8xb8-120e_coco.py ssd300.pth demo.jpg
    python tools/image_demo.py CONFIG CHECKPOINT photos/ --out-dir outputs --batch-size 8
    python tools/image_demo.py CONFIG CHECKPOINT 'photos/**/*.jpg' --score-thr 0.5 --device cpu
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import os.path as osp
from typing import TYPE_CHECKING, Dict, List, Sequence

from ssd_plugin_cli.errors import add_debug_arg, run_tool
from ssd_plugin_cli.options import add_amp_args

# cv2, torch, mmdet and ssd_plugin are imported where they are used, after the arguments are
# parsed: --help and a wrong option answer without loading the detection stack
if TYPE_CHECKING:
    import numpy as np
    from mmdet.apis import DetInferencer

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Detect objects in images')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('inputs', help='an image file, a folder of images or a glob (quote it)')
    parser.add_argument('--out-dir', default='outputs', help='output folder (default: outputs)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='keep (draw and save) detections scoring at least this')  # fmt: skip
    parser.add_argument('--device', default=None,
                        help='device, e.g. cpu or cuda:0 (default: cuda if available)')  # fmt: skip
    parser.add_argument('--batch-size', type=int, default=1, help='images per forward pass')
    add_amp_args(parser)
    add_debug_arg(parser)
    args = parser.parse_args(argv)
    for key in ('config', 'checkpoint'):
        if not osp.isfile(getattr(args, key)):
            parser.error(f'{key} file not found: {getattr(args, key)}')
    if args.batch_size < 1:
        parser.error(f'--batch-size must be >= 1, got {args.batch_size}')
    return args


def list_images(inputs: str) -> List[str]:
    """The image files INPUTS names (a file, a folder or a glob), sorted.

    Raises:
        FileNotFoundError: Nothing matches, or the folder holds no image.
    """
    if osp.isfile(inputs):
        return [inputs]
    if osp.isdir(inputs):
        files = [osp.join(inputs, f) for f in sorted(os.listdir(inputs))]
        files = [f for f in files if osp.isfile(f) and f.lower().endswith(IMG_EXTENSIONS)]
        if not files:
            raise FileNotFoundError(f'no image ({", ".join(IMG_EXTENSIONS)}) in folder {inputs}')
        return files
    files = sorted(f for f in glob.glob(inputs, recursive=True) if osp.isfile(f))
    if not files:
        raise FileNotFoundError(f'no file matches {inputs!r} (not a file, a folder or a glob)')
    return files


def output_stems(files: Sequence[str]) -> List[str]:
    """Output names: each path relative to the files' common folder, without extension."""
    root = osp.dirname(files[0]) if len(files) == 1 else osp.commonpath(files)
    stems = [osp.splitext(osp.relpath(f, root))[0].replace(os.sep, '__') for f in files]
    if len(set(stems)) != len(stems):  # a.jpg and a.png in the same folder
        stems = [osp.relpath(f, root).replace(os.sep, '__') for f in files]
    return stems


def read_image(path: str) -> np.ndarray:
    """The BGR image at ``path``; a clear error if it cannot be decoded."""
    import cv2

    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f'cannot read image {path} (missing, unsupported or corrupt)')
    return img


def detections(pred_instances, classes: Sequence[str], score_thr: float) -> List[Dict]:
    """A model's ``pred_instances`` as a list of detections scoring >= ``score_thr``, best first."""
    out = []
    pred = pred_instances.cpu().numpy()
    for label, score, bbox in zip(pred.labels, pred.scores, pred.bboxes):
        if score >= score_thr:
            name = classes[label] if label < len(classes) else str(label)
            out.append(dict(label=int(label), **{'class': name}, score=float(score),
                            bbox=[float(v) for v in bbox]))  # fmt: skip
    return sorted(out, key=lambda d: -d['score'])


def build_inferencer(config: str, checkpoint: str, device: str) -> DetInferencer:
    """mmdet's ``DetInferencer`` for the config, its visualizer without storage backends.

    The configs' ``LocalVisBackend`` needs a ``save_dir`` that an inferencer never gives it (it
    warns "Failed to add LocalVisBackend"); this tool writes the drawn images itself. Boxes at
    the image's edges are drawn without "out of bounds" warnings (``border_safe``).
    """
    from mmdet.apis import DetInferencer
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import FUNCTIONS

    import ssd_plugin  # noqa: F401  (registers the components: configs need no custom_imports)
    from ssd_plugin.cli.data_root import load_config_with_data_root
    from ssd_plugin.engine.checkpoint import weights_only_checkpoint_loading
    from ssd_plugin.visualization import border_safe

    class _Inferencer(DetInferencer):
        """mmdet's ``DetInferencer`` whose collate function is found without a warning.

        mmengine looks the config's ``collate_fn`` up in the ``FUNCTIONS`` registry of the
        inferencer's scope, but mmdet has no such registry: the lookup warns "Failed to search
        registry with scope mmdet" and falls back to mmengine's, as this does at once.
        """

        def _init_collate(self, cfg):
            collate_fn = cfg.test_dataloader.get('collate_fn')
            if isinstance(collate_fn, dict):
                collate_fn = collate_fn['type']
            return FUNCTIONS.get(collate_fn) if collate_fn else pseudo_collate

    cfg = load_config_with_data_root(config)
    if cfg.get('visualizer'):
        border_safe(cfg.visualizer).vis_backends = None
    with weights_only_checkpoint_loading():  # loads mmengine's checkpoints with torch >= 2.6
        return _Inferencer(model=cfg, weights=checkpoint, device=device, scope='mmdet',
                           show_progress=False)  # fmt: skip


def draw_detections(visualizer, name: str, img: np.ndarray, sample, score_thr: float) -> np.ndarray:
    """``img`` (BGR) with the detections of ``sample`` scoring >= ``score_thr`` drawn, BGR.

    The visualizer draws on RGB (its palette is RGB); DetInferencer hands it array inputs
    unconverted, so its own drawing of a BGR array comes out with red and blue swapped.
    """
    import numpy as np

    visualizer.add_datasample(name, img[..., ::-1], sample, draw_gt=False,
                              pred_score_thr=score_thr)  # fmt: skip
    return np.ascontiguousarray(visualizer.get_image()[..., ::-1])


def main(argv=None) -> None:
    args = parse_args(argv)
    import cv2
    import torch
    from mmengine.utils import mkdir_or_exist

    from ssd_plugin.engine.amp import autocast_network, choose_amp

    files = list_images(args.inputs)
    unreadable = [f for f in files if not cv2.haveImageReader(f)]
    if unreadable:  # checked before any work: nothing is half-written
        raise ValueError(f'not an image OpenCV can decode: {", ".join(unreadable)}')
    stems = output_stems(files)
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    inferencer = build_inferencer(args.config, args.checkpoint, device)
    if args.amp:  # the network under autocast; post-processing stays float32
        choice = choose_amp(device, args.amp_dtype or 'auto')
        autocast_network(inferencer.model, choice)
        print(f'WARNING: {choice.describe()}' if choice.warning else choice.describe())
    classes = inferencer.model.dataset_meta.get('classes', ())
    vis_dir, pred_dir = osp.join(args.out_dir, 'vis'), osp.join(args.out_dir, 'preds')
    mkdir_or_exist(vis_dir)
    mkdir_or_exist(pred_dir)
    for start in range(0, len(files), args.batch_size):
        chunk = files[start : start + args.batch_size]
        # decoded here, so that a corrupt file is named (mmdet's loader fails without the name)
        imgs = [read_image(f) for f in chunk]
        result = inferencer(imgs, batch_size=len(imgs), return_datasamples=True,
                            no_save_pred=True)  # fmt: skip
        for i, sample in enumerate(result['predictions']):
            stem, img = stems[start + i], imgs[i]
            vis = draw_detections(inferencer.visualizer, stem, img, sample, args.score_thr)
            cv2.imwrite(osp.join(vis_dir, f'{stem}.png'), vis)
            record = dict(image=chunk[i], height=img.shape[0], width=img.shape[1],
                          detections=detections(sample.pred_instances, classes,
                                                args.score_thr))  # fmt: skip
            with open(osp.join(pred_dir, f'{stem}.json'), 'w') as f:
                json.dump(record, f, indent=1)
        print(f'{min(start + args.batch_size, len(files))}/{len(files)} images done')
    print(f'drawn images in {vis_dir}, detections in {pred_dir}')


if __name__ == '__main__':
    raise SystemExit(run_tool(main))  # a refusal: one line, no traceback (--debug)
