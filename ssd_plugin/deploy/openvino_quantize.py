"""int8 post-training quantisation of an exported SSD for OpenVINO, with NNCF.

The counterpart of :mod:`ssd_plugin.deploy.quantize` (ONNX Runtime) for OpenVINO: the float32
ONNX graph is read by OpenVINO, NNCF's ``quantize`` inserts its FakeQuantize operations on the
network only (the nodes the exporter names under the detector's modules, as for ONNX Runtime;
normalisation, decoding, softmax and post-processing stay float32), calibrated on the same val
images (:func:`~ssd_plugin.deploy.quantize.calibration_batches`), and the result is saved as
OpenVINO IR (``.xml`` + ``.bin``, float32 weights where not int8) with the export metadata in
its rt_info (:data:`~ssd_plugin.deploy.onnx_eval.OPENVINO_METADATA`). OpenVINO's CPU plugin picks
its int8 kernels for the CPU it runs on (VNNI, AMX or AVX2 without saturation), so the IR has no
target setting.
"""

import contextlib
import json
import logging
from typing import Iterable

import numpy as np

from .onnx_eval import OPENVINO_METADATA
from .quantize import NETWORK_SCOPES

__all__ = ['FLOAT_TYPES', 'quantize_openvino']

#: OpenVINO operator types whose inputs stay float32: L2Norm's (x / sqrt(sum(x ** 2)) * w) and
#: residual sums' (both branches of an Add at 8 bits cost the demo's ResNet 0.020 mAP in
#: OpenVINO, 0.538 against float32's 0.558; float32 Adds, convolutions int8: 0.561)
FLOAT_TYPES = ('Power', 'ReduceSum', 'ReduceL2', 'Sqrt', 'Divide', 'Multiply', 'Add')


def quantize_openvino(model_path: str, out_path: str, calibration: Iterable[np.ndarray],
                      note: str = '') -> str:  # fmt: skip
    """Write an int8 OpenVINO IR of the float32 ONNX graph ``model_path`` to ``out_path``.

    Args:
        model_path: The float32 ``.onnx`` from ``export_onnx``.
        out_path: The IR's ``.xml`` (the ``.bin`` is written beside it).
        calibration: Input batches ``(B, 3, H, W)`` float32, e.g.
            :func:`~ssd_plugin.deploy.quantize.calibration_batches`.
        note: Where the calibration images came from, for the metadata.

    Returns:
        ``out_path``.
    """
    import nncf
    import onnx
    import openvino as ov

    if not out_path.endswith('.xml'):
        raise ValueError(f'out_path must be an OpenVINO IR .xml file, got {out_path}')
    images = [batch[i : i + 1] for batch in calibration for i in range(len(batch))]
    if not images:
        raise ValueError('no calibration images')
    model = ov.Core().read_model(model_path)
    scopes = '|'.join(scope.strip('/') for scope in NETWORK_SCOPES)
    # everything outside the network stays float32 (a regex of node names), and inside it the
    # L2Norm arithmetic (a sum of squares spans far more than 8 bits), as ONNX Runtime's
    # quantiser leaves it (QUANT_OPS), and the residual Adds (see FLOAT_TYPES)
    ignored = nncf.IgnoredScope(
        patterns=[f'^(?!/({scopes})/).*'], types=list(FLOAT_TYPES), validate=False
    )
    with _quiet('nncf'):  # NNCF logs every node it leaves alone, thousands of lines
        quantized = nncf.quantize(
            model, nncf.Dataset(images), subset_size=len(images), ignored_scope=ignored
        )
    props = {p.key: p.value for p in onnx.load(model_path, load_external_data=False).metadata_props}
    props['quantization'] = (
        f'int8 NNCF post-training quantisation (nncf {nncf.__version__}, its default ranges, '
        f'{len(images)} images{", " + note if note else ""})'
    )
    quantized.set_rt_info(json.dumps(props), list(OPENVINO_METADATA))
    ov.save_model(quantized, out_path, compress_to_fp16=False)
    return out_path


@contextlib.contextmanager
def _quiet(name: str):
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
