"""int8 static quantisation of an exported SSD with ONNX Runtime, calibrated on the val set.

Only the network is quantised: the nodes the exporter names under the detector's modules
(``/backbone/...``, ``/neck/...``, ``/bbox_head/...``: the head's convolutions). The graph's
normalisation, the box decoding, the softmax and the post-processing stay float32, so boxes and
scores keep their precision and the score threshold means what it means in float32. Calibration
runs the float32 graph on the config's val images through its test pipeline (see
:func:`~ssd_plugin.deploy.onnx_eval.pipeline_batches`) and records each quantised tensor's range
(min-max).

Formats (``quant_format``): ``qdq`` inserts QuantizeLinear / DequantizeLinear pairs, which ONNX
Runtime fuses into int8 kernels; ``qoperator`` writes the int8 operators (``QLinearConv``) itself.
Activations are uint8, weights int8 (per output channel with ``per_channel``): ONNX Runtime's
recommended combination on x86 CPUs with VNNI.
"""

import os.path as osp
import tempfile
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np
import onnx
from mmengine.config import Config
from onnx import numpy_helper

from .onnx_eval import graph_metadata, pipeline_batches

__all__ = ['QUANT_OPS', 'calibration_batches', 'constants_as_initializers', 'quantize_onnx']

# The network's operator types that are quantised (everything else stays float32).
QUANT_OPS = ('Conv', 'Relu', 'Clip', 'MaxPool', 'Add', 'Concat')
# node-name prefixes of the network in export_onnx's graphs (the exporter's module scopes)
NETWORK_SCOPES = ('/backbone/', '/neck/', '/bbox_head/', '/detector/')


def constants_as_initializers(model: onnx.ModelProto) -> int:
    """Turn the main graph's ``Constant`` nodes, and ``Identity`` nodes of initializers, into
    initializers, in place; returns how many nodes went.

    The exporter folds each BatchNorm into its convolution and emits the new bias as a
    ``Constant`` node (equal ones shared through ``Identity`` nodes). ONNX Runtime's quantiser
    quantises only initializer biases, and its int8 convolution needs the bias's
    ``DequantizeLinear`` right before the ``Conv``: without this pass every convolution with a
    folded BatchNorm stays float32 between a dequantise and a quantise, slower than no int8 at
    all. The values are unchanged.
    """
    graph = model.graph
    known = {init.name: init for init in graph.initializer}
    kept, moved = [], 0
    for node in graph.node:
        value = None
        if node.op_type == 'Constant' and [a.name for a in node.attribute] == ['value']:
            value = numpy_helper.to_array(node.attribute[0].t)
        elif node.op_type == 'Identity' and node.input[0] in known:
            value = numpy_helper.to_array(known[node.input[0]])
        if value is None:
            kept.append(node)
            continue
        init = numpy_helper.from_array(value, node.output[0])
        graph.initializer.append(init)
        known[init.name] = init
        moved += 1
    del graph.node[:]
    graph.node.extend(kept)
    return moved


class _Batches:
    """ONNX Runtime's ``CalibrationDataReader`` protocol over input batches."""

    def __init__(self, batches: Iterable[np.ndarray]) -> None:
        self._batches = iter(batches)

    def get_next(self) -> Optional[dict]:
        batch = next(self._batches, None)
        return None if batch is None else {'input': batch}


def calibration_batches(
    cfg: Config, model_path: str, num_images: int = 100, batch_size: int = 8
) -> Iterator[np.ndarray]:
    """The first ``num_images`` val images of ``cfg`` as the graph at ``model_path`` takes them
    (test pipeline, and the data preprocessor unless the graph normalises itself)."""
    if num_images < 1:
        raise ValueError(f'num_images must be >= 1, got {num_images}')
    meta = graph_metadata(model_path)
    if 'input_size' not in meta:
        raise ValueError(f'{model_path}: no export metadata; export it with export_onnx.py')
    normalize = bool(meta.get('normalize', True))
    for inputs, _ in pipeline_batches(cfg, 'val', batch_size, num_images, normalize):
        yield inputs


def quantize_onnx(
    model_path: str,
    out_path: str,
    calibration: Iterable[np.ndarray],
    quant_format: str = 'qdq',
    per_channel: bool = True,
    op_types: Sequence[str] = QUANT_OPS,
    note: str = '',
) -> str:
    """Write an int8 copy of the float32 graph ``model_path`` (from ``export_onnx``) to
    ``out_path``.

    Args:
        model_path: The float32 graph (any outputs: raw, decoded or with post-processing).
        out_path: The int8 graph, e.g. ``model_int8.onnx``.
        calibration: Input batches ``(B, 3, H, W)`` float32, e.g. :func:`calibration_batches`.
        quant_format: ``qdq`` or ``qoperator`` (see the module docstring).
        per_channel: One weight scale per output channel (else per tensor).
        op_types: Operator types to quantise inside the network.
        note: Where the calibration images came from, for the graph's metadata.

    Returns:
        ``out_path``.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    formats = dict(qdq=QuantFormat.QDQ, qoperator=QuantFormat.QOperator)
    if quant_format not in formats:
        raise ValueError(f'quant_format must be one of {sorted(formats)}, got {quant_format!r}')
    model = onnx.load(model_path)
    constants_as_initializers(model)
    network = [node.name for node in model.graph.node if node.name.startswith(NETWORK_SCOPES)]
    if not network:
        raise ValueError(f'{model_path}: no node named under {NETWORK_SCOPES} (the network)')
    with tempfile.TemporaryDirectory(prefix='ssd_quantize_') as tmp:
        prepared = osp.join(tmp, 'prepared.onnx')
        onnx.save(model, prepared)
        quantize_static(
            prepared,
            out_path,
            _Batches(calibration),
            quant_format=formats[quant_format],
            op_types_to_quantize=list(op_types),
            nodes_to_quantize=network,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    quantized = onnx.load(out_path)
    # keep the export metadata (input size, preprocessing, classes) and say what was done
    props = {p.key: p.value for p in model.metadata_props}
    props['quantization'] = (
        f'int8 static ({quant_format}, per_channel={per_channel}, ops {list(op_types)}, '
        f'min-max calibration{", " + note if note else ""})'
    )
    onnx.helper.set_model_props(quantized, props)
    onnx.save(quantized, out_path)
    return out_path
