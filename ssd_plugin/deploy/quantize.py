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
Activations are uint8, weights int8 (per output channel with ``per_channel``).

Targets (:data:`INT8_TARGETS`, :func:`int8_settings`): ONNX Runtime's uint8 x int8 kernels differ
by CPU. With VNNI (``vpdpbusd``) or AMX the products of four byte pairs are summed straight into
int32; on x86 CPUs without them (AVX2, AVX512 without VNNI) the kernel first adds each *pair* of
products into a saturating int16 (``vpmaddubsw``): ``2 * 255 * 128 = 65280`` overflows 32767, the
result is clamped, and a graph calibrated for full 8-bit weights loses accuracy on those CPUs
only. The ``avx2`` target therefore quantises weights to 7 bits (``reduce_range``: -64..64, so
``2 * 255 * 64 = 32640`` cannot saturate): it holds on every CPU, at half the weight resolution.
``auto`` picks this CPU's target; a graph meant for other machines should name theirs (``avx2``
when unknown).
"""

import json
import os.path as osp
import platform
import tempfile
from dataclasses import asdict, dataclass
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np
import onnx
from mmengine.config import Config
from onnx import numpy_helper

from ..utils.cpu_features import cpu_flags
from .onnx_eval import graph_metadata, pipeline_batches

__all__ = [
    'INT8_TARGETS',
    'QUANT_OPS',
    'Int8Settings',
    'calibration_batches',
    'constants_as_initializers',
    'cpu_int8_target',
    'int8_settings',
    'quantize_onnx',
]

# The network's operator types that are quantised (everything else stays float32).
QUANT_OPS = ('Conv', 'Relu', 'Clip', 'MaxPool', 'Add', 'Concat')
# node-name prefixes of the network in export_onnx's graphs (the exporter's module scopes)
NETWORK_SCOPES = ('/backbone/', '/neck/', '/bbox_head/', '/detector/')
#: target -> (reduce_range, why): the CPU kinds whose int8 kernels the settings suit
INT8_TARGETS = {
    'avx2': (True, 'x86 without VNNI sums byte-product pairs in saturating int16: 7-bit weights '
             '(reduce_range) cannot saturate, and hold on every CPU'),
    'vnni': (False, 'VNNI (avx512_vnni / avx_vnni) sums byte products in int32: full 8-bit '
             'weights; saturates on CPUs without VNNI'),
    'amx': (False, 'AMX sums byte products in int32: full 8-bit weights; saturates on CPUs '
            'without VNNI'),
}  # fmt: skip
# cpuinfo flags -> target, best first
_TARGET_FLAGS = (('amx', ('amx_int8',)), ('vnni', ('avx512_vnni', 'avx_vnni')))
METADATA_KEY = 'int8_settings'


@dataclass(frozen=True)
class Int8Settings:
    """What :func:`quantize_onnx` does, and for which CPUs.

    Attributes:
        target (str): A key of :data:`INT8_TARGETS`.
        reduce_range (bool): 7-bit weights (no int16 saturation on CPUs without VNNI).
        quant_format (str): ``qdq`` or ``qoperator``.
        per_channel (bool): One weight scale per output channel.
        activation_type (str): ``uint8``.
        weight_type (str): ``int8``.
        reason (str): Why these settings for this target.
    """

    target: str
    reduce_range: bool
    quant_format: str = 'qdq'
    per_channel: bool = True
    activation_type: str = 'uint8'
    weight_type: str = 'int8'
    reason: str = ''

    def describe(self) -> str:
        """One line: the settings and why."""
        bits = 7 if self.reduce_range else 8
        return (f'int8 target {self.target}: {self.quant_format}, activations '
                f'{self.activation_type}, weights {self.weight_type} ({bits}-bit'
                f'{", per channel" if self.per_channel else ""}, reduce_range='
                f'{self.reduce_range}): {self.reason}')  # fmt: skip


def cpu_int8_target(flags: Optional[Iterable[str]] = None) -> str:
    """The int8 target of a CPU with the feature ``flags`` (default: this CPU's flags as its
    libraries see them, :func:`~ssd_plugin.utils.cpu_flags`): ``amx``, ``vnni``, else ``avx2``
    (also for non-x86 CPUs and where the flags cannot be read: the settings that hold
    everywhere)."""
    if flags is None:
        flags = cpu_flags() if platform.machine().lower() in ('x86_64', 'amd64') else ()
    flags = set(flags)
    for target, needs in _TARGET_FLAGS:
        if flags & set(needs):
            return target
    return 'avx2'


def int8_settings(target: str = 'auto', quant_format: str = 'qdq',
                  per_channel: bool = True) -> Int8Settings:  # fmt: skip
    """The settings for ``target`` (``auto``: :func:`cpu_int8_target` of this CPU).

    Raises:
        ValueError: An unknown target or format.
    """
    if target == 'auto':
        target = cpu_int8_target()
    if target not in INT8_TARGETS:
        raise ValueError(f"int8 target must be 'auto' or one of {sorted(INT8_TARGETS)}, "
                         f'got {target!r}')  # fmt: skip
    if quant_format not in ('qdq', 'qoperator'):
        raise ValueError(f"quant_format must be 'qdq' or 'qoperator', got {quant_format!r}")
    reduce_range, why = INT8_TARGETS[target]
    return Int8Settings(target, reduce_range, quant_format, per_channel, reason=why)


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
    settings: Optional[Int8Settings] = None,
    op_types: Sequence[str] = QUANT_OPS,
    note: str = '',
) -> str:
    """Write an int8 copy of the float32 graph ``model_path`` (from ``export_onnx``) to
    ``out_path``.

    Args:
        model_path: The float32 graph (any outputs: raw, decoded or with post-processing).
        out_path: The int8 graph, e.g. ``model_int8.onnx``.
        calibration: Input batches ``(B, 3, H, W)`` float32, e.g. :func:`calibration_batches`.
        settings: From :func:`int8_settings` (default: ``int8_settings('auto')``, this CPU's).
        op_types: Operator types to quantise inside the network.
        note: Where the calibration images came from, for the graph's metadata.

    Returns:
        ``out_path``. Its metadata keeps the export's and adds ``quantization`` (a sentence)
        and ``int8_settings`` (JSON of ``settings``).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    settings = settings or int8_settings()
    formats = dict(qdq=QuantFormat.QDQ, qoperator=QuantFormat.QOperator)
    model = onnx.load(model_path)
    constants_as_initializers(model)
    with tempfile.TemporaryDirectory(prefix='ssd_quantize_') as tmp:
        prepared = osp.join(tmp, 'prepared.onnx')
        onnx.save(model, osp.join(tmp, 'float32.onnx'))
        # ONNX Runtime's recommended pre-processing (shape inference, its basic graph
        # optimisations), which its quantiser otherwise asks for in two warnings
        quant_pre_process(osp.join(tmp, 'float32.onnx'), prepared)
        network = [node.name for node in onnx.load(prepared).graph.node
                   if node.name.startswith(NETWORK_SCOPES)]  # fmt: skip
        if not network:
            raise ValueError(f'{model_path}: no node named under {NETWORK_SCOPES} (the network)')
        quantize_static(
            prepared,
            out_path,
            _Batches(calibration),
            quant_format=formats[settings.quant_format],
            op_types_to_quantize=list(op_types),
            nodes_to_quantize=network,
            per_channel=settings.per_channel,
            reduce_range=settings.reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    quantized = onnx.load(out_path)
    # keep the export metadata (input size, preprocessing, classes) and say what was done
    props = {p.key: p.value for p in model.metadata_props}
    props['quantization'] = (
        f'int8 static ({settings.quant_format}, target {settings.target}, per_channel='
        f'{settings.per_channel}, reduce_range={settings.reduce_range}, ops {list(op_types)}, '
        f'min-max calibration{", " + note if note else ""})'
    )
    props[METADATA_KEY] = json.dumps(asdict(settings))
    onnx.helper.set_model_props(quantized, props)
    onnx.save(quantized, out_path)
    return out_path
