"""An exported SSD (``--with-nms``) on a config's dataset: its input batches and its metrics.

The images go through the config's test pipeline (the Resize the graph was exported for), and,
for a graph exported without normalisation, through the config's data preprocessor: exactly what
the PyTorch model sees. Detections are scaled back to the original images with each image's
``scale_factor`` and scored by the config's evaluator (``CocoMetric`` for COCO-style sets), so the
figures compare with ``tools/test.py``'s.
"""

import json
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from mmdet.registry import DATASETS, MODELS
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.evaluator import Evaluator
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

__all__ = ['graph_metadata', 'pipeline_batches', 'evaluate_onnx']


def graph_metadata(model_path: str) -> Dict[str, object]:
    """The metadata ``export_onnx`` stores (JSON values decoded where they are JSON)."""
    import onnxruntime as ort

    props = ort.InferenceSession(model_path, providers=['CPUExecutionProvider'])
    meta = props.get_modelmeta().custom_metadata_map
    out = {}
    for key, value in meta.items():
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def pipeline_batches(
    cfg: Config,
    split: str = 'val',
    batch_size: int = 8,
    num_images: Optional[int] = None,
    normalize_in_graph: bool = True,
) -> Iterator[Tuple[np.ndarray, List]]:
    """``(inputs (B, 3, H, W) float32, data_samples)`` of the first ``num_images`` (default all)
    images of ``cfg``'s ``{split}_dataloader`` dataset.

    With ``normalize_in_graph`` the inputs are the test pipeline's 0-255 pixels (what a graph
    exported with normalisation takes); else they are also put through
    ``cfg.model.data_preprocessor``.
    """
    key = f'{split}_dataloader'
    if key not in cfg:
        raise KeyError(f'the config has no {key}')
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmdet')):
        dataset = DATASETS.build(cfg[key].dataset)
        preprocessor = None if normalize_in_graph else MODELS.build(cfg.model.data_preprocessor)
    total = len(dataset) if num_images is None else min(num_images, len(dataset))
    for start in range(0, total, batch_size):
        data = pseudo_collate([dataset[i] for i in range(start, min(start + batch_size, total))])
        shapes = {tuple(img.shape) for img in data['inputs']}
        if len(shapes) > 1:
            raise ValueError(
                f'{key}: the test pipeline gives images of different sizes {sorted(shapes)}; '
                'an exported graph needs a fixed-size Resize (keep_ratio=False)'
            )
        if preprocessor is None:
            inputs = torch.stack(data['inputs']).float()
        else:
            inputs = preprocessor(data, False)['inputs']
        yield inputs.numpy(), data['data_samples']


def evaluate_onnx(
    model_path: str,
    cfg: Config,
    split: str = 'val',
    batch_size: int = 8,
    num_images: Optional[int] = None,
) -> Dict[str, float]:
    """Metrics of the graph at ``model_path`` on ``cfg``'s ``split`` set (``{split}_evaluator``).

    Args:
        model_path: A graph exported ``with_nms`` (outputs ``dets`` and ``labels``).
        cfg: The config it was exported from.
        split: ``val`` or ``test``.
        batch_size: Images per ONNX Runtime call.
        num_images: Evaluate only the first ones (the evaluator must accept a subset).

    Returns:
        The evaluator's metrics, e.g. ``coco/bbox_mAP``.
    """
    import onnxruntime as ort

    meta = graph_metadata(model_path)
    if meta.get('outputs') != ['dets', 'labels']:
        raise ValueError(
            f'{model_path}: evaluation needs a graph with the post-processing (export it with '
            f'--with-nms); its outputs are {meta.get("outputs")}'
        )
    session = ort.InferenceSession(model_path, providers=['CPUExecutionProvider'])
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmdet')):
        evaluator = Evaluator(cfg[f'{split}_evaluator'])
        evaluator.dataset_meta = DATASETS.build(cfg[f'{split}_dataloader'].dataset).metainfo
    count = 0
    for inputs, samples in pipeline_batches(
        cfg, split, batch_size, num_images, bool(meta.get('normalize', True))
    ):
        dets, labels = session.run(None, {'input': inputs})
        scale = np.array([s.metainfo['scale_factor'] for s in samples], np.float32)  # (B, 2)
        boxes = dets[..., :4] / np.tile(scale, 2)[:, None]
        for sample, boxes_i, dets_i, labels_i in zip(samples, boxes, dets, labels):
            valid = labels_i >= 0
            sample.pred_instances = InstanceData(
                bboxes=torch.from_numpy(boxes_i[valid]),
                scores=torch.from_numpy(dets_i[valid, 4]),
                labels=torch.from_numpy(labels_i[valid]),
            )
        evaluator.process(samples)
        count += len(samples)
    return evaluator.evaluate(count)
