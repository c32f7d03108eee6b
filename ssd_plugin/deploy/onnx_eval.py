"""An exported SSD (``--with-nms``) on a config's dataset: its input batches and its metrics.

The images go through the config's test pipeline (the Resize the graph was exported for), and,
for a graph exported without normalisation, through the config's data preprocessor: exactly what
the PyTorch model sees. Detections are scaled back to the original images with each image's
``scale_factor`` and scored by the config's evaluator (``CocoMetric`` for COCO-style sets), so the
figures compare with ``tools/test.py``'s. The graph runs in any of
:data:`~ssd_plugin.deploy.runtimes.RUNTIMES`; :func:`evaluate_pytorch` scores the PyTorch model
on the same batches, for the comparison.
"""

import json
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np
import torch
from mmdet.registry import DATASETS, MODELS
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.evaluator import Evaluator
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData
from torch import nn

from .runtimes import load_runtime

__all__ = ['bbox_map', 'evaluate_onnx', 'evaluate_pytorch', 'graph_metadata', 'pipeline_batches']

#: where OpenVINO IR files (``.xml``) written here keep the ONNX metadata (rt_info path)
OPENVINO_METADATA = ('ssd_plugin', 'metadata')


def graph_metadata(model_path: str) -> Dict[str, object]:
    """The metadata ``export_onnx`` (and the quantisers) store, JSON values decoded where they
    are JSON: an ONNX file's ``metadata_props``, or the copy an OpenVINO IR (``.xml``) written by
    :func:`~ssd_plugin.deploy.openvino_quantize.quantize_openvino` keeps in its rt_info."""
    if model_path.endswith('.xml'):
        import openvino as ov

        model = ov.Core().read_model(model_path)
        if not model.has_rt_info(list(OPENVINO_METADATA)):
            return {}
        meta = json.loads(model.get_rt_info(list(OPENVINO_METADATA)).astype(str))
    else:
        import onnx

        proto = onnx.load(model_path, load_external_data=False)
        meta = {p.key: p.value for p in proto.metadata_props}
    out = {}
    for key, value in meta.items():
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def dataset_batches(cfg: Config, split: str = 'val', batch_size: int = 8,
                    num_images: Optional[int] = None) -> Iterator[Dict]:  # fmt: skip
    """The first ``num_images`` (default all) items of ``cfg``'s ``{split}_dataloader`` dataset
    through its pipeline, collated in batches (what ``model.test_step`` takes)."""
    key = f'{split}_dataloader'
    if key not in cfg:
        raise KeyError(f'the config has no {key}')
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmdet')):
        dataset = DATASETS.build(cfg[key].dataset)
    total = len(dataset) if num_images is None else min(num_images, len(dataset))
    for start in range(0, total, batch_size):
        yield pseudo_collate([dataset[i] for i in range(start, min(start + batch_size, total))])


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
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmdet')):
        preprocessor = None if normalize_in_graph else MODELS.build(cfg.model.data_preprocessor)
    for data in dataset_batches(cfg, split, batch_size, num_images):
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


def bbox_map(metrics: Dict[str, float]) -> float:
    """The bbox mAP among an evaluator's metrics (``coco/bbox_mAP``, ``pascal_voc/mAP``).

    Raises:
        KeyError: None of them is one (the message lists them).
    """
    key = next((k for k in metrics if k.endswith(('bbox_mAP', '/mAP'))), None)
    if key is None:
        raise KeyError(f'the evaluator reports no bbox mAP: {sorted(metrics)}')
    return metrics[key]


def _evaluate(cfg: Config, split: str, predictions: Iterable[List]) -> Dict[str, float]:
    """``cfg``'s ``{split}_evaluator`` over batches of data samples with ``pred_instances``."""
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmdet')):
        evaluator = Evaluator(cfg[f'{split}_evaluator'])
        evaluator.dataset_meta = DATASETS.build(cfg[f'{split}_dataloader'].dataset).metainfo
    count = 0
    for samples in predictions:
        evaluator.process(samples)
        count += len(samples)
    return evaluator.evaluate(count)


def evaluate_onnx(
    model_path: str,
    cfg: Config,
    split: str = 'val',
    batch_size: int = 8,
    num_images: Optional[int] = None,
    runtime: str = 'onnxruntime',
) -> Dict[str, float]:
    """Metrics of the graph at ``model_path`` on ``cfg``'s ``split`` set (``{split}_evaluator``).

    Args:
        model_path: A graph exported ``with_nms`` (outputs ``dets`` and ``labels``): ``.onnx``,
            or OpenVINO IR ``.xml`` for ``runtime='openvino'``.
        cfg: The config it was exported from.
        split: ``val`` or ``test``.
        batch_size: Images per runtime call.
        num_images: Evaluate only the first ones (the evaluator must accept a subset).
        runtime: One of :data:`~ssd_plugin.deploy.runtimes.RUNTIMES`.

    Returns:
        The evaluator's metrics, e.g. ``coco/bbox_mAP``.
    """
    meta = graph_metadata(model_path)
    if meta.get('outputs') != ['dets', 'labels']:
        raise ValueError(
            f'{model_path}: evaluation needs a graph with the post-processing (export it with '
            f'--with-nms); its outputs are {meta.get("outputs")}'
        )
    run = load_runtime(model_path, runtime)

    def predictions():
        for inputs, samples in pipeline_batches(
            cfg, split, batch_size, num_images, bool(meta.get('normalize', True))
        ):
            dets, labels = run(inputs)
            scale = np.array([s.metainfo['scale_factor'] for s in samples], np.float32)  # (B, 2)
            boxes = dets[..., :4] / np.tile(scale, 2)[:, None]
            for sample, boxes_i, dets_i, labels_i in zip(samples, boxes, dets, labels):
                valid = labels_i >= 0
                sample.pred_instances = InstanceData(
                    bboxes=torch.from_numpy(boxes_i[valid]),
                    scores=torch.from_numpy(dets_i[valid, 4]),
                    labels=torch.from_numpy(labels_i[valid].astype(np.int64)),
                )
            yield samples

    return _evaluate(cfg, split, predictions())


def evaluate_pytorch(
    model: nn.Module,
    cfg: Config,
    split: str = 'val',
    batch_size: int = 8,
    num_images: Optional[int] = None,
) -> Dict[str, float]:
    """Metrics of the PyTorch ``model`` (``model.test_step``) on the same images and evaluator
    as :func:`evaluate_onnx`."""
    model.eval()

    def predictions():
        for data in dataset_batches(cfg, split, batch_size, num_images):
            with torch.no_grad():
                samples = model.test_step(data)
            yield samples

    return _evaluate(cfg, split, predictions())
