"""The CPU runtimes an exported SSD runs in: ONNX Runtime, OpenVINO and OpenCV's DNN module.

Each loads the graph :func:`~ssd_plugin.deploy.export_onnx` writes (``.onnx``; OpenVINO also its
own IR, ``.xml``, as :func:`~ssd_plugin.deploy.openvino_quantize.quantize_openvino` writes) and
becomes one function from an input batch ``(B, 3, H, W)`` float32 to the graph's outputs, in the
graph's order (``dets, labels`` for a ``--with-nms`` export).

- ``onnxruntime``: ``CPUExecutionProvider``, all graph optimisations (int8 QDQ graphs run in its
  int8 kernels; a graph quantised for VNNI CPUs warns on a CPU without VNNI).
- ``openvino``: the ``CPU`` device with ``INFERENCE_PRECISION_HINT=f32``: OpenVINO otherwise runs
  float32 graphs in bf16 on CPUs with native bf16, which is another precision, not the same
  graph faster. Quantised graphs (ONNX QDQ, or NNCF's IR) still run their int8 parts in int8.
- ``opencv``: ``cv2.dnn.readNetFromONNX`` (OpenCV 5's engine), one image per call where the
  graph's batch is fixed.
"""

import json
import os.path as osp
import warnings
from typing import Callable, List, Optional

import numpy as np

__all__ = ['RUNTIMES', 'int8_target_warning', 'load_runtime', 'runtime_version']

RUNTIMES = ('onnxruntime', 'openvino', 'opencv')
Runner = Callable[[np.ndarray], List[np.ndarray]]


def runtime_version(runtime: str) -> str:
    """The installed version of ``runtime`` (``-`` when it is not installed)."""
    module = dict(onnxruntime='onnxruntime', openvino='openvino', opencv='cv2')[runtime]
    try:
        return __import__(module).__version__
    except ImportError:
        return '-'


def load_runtime(model_path: str, runtime: str = 'onnxruntime',
                 threads: Optional[int] = None) -> Runner:  # fmt: skip
    """The graph at ``model_path`` in ``runtime`` (see the module docstring).

    Args:
        model_path: ``.onnx`` (every runtime) or OpenVINO's ``.xml``.
        runtime: One of :data:`RUNTIMES`.
        threads: Intra-op threads (default: the runtime's own choice).

    Raises:
        ValueError: An unknown runtime, or a file the runtime cannot read.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f'runtime must be one of {", ".join(RUNTIMES)}, got {runtime!r}')
    if not model_path.endswith('.onnx') and not (runtime == 'openvino' and
                                                 model_path.endswith('.xml')):  # fmt: skip
        also = ' (and OpenVINO IR .xml)' if runtime == 'openvino' else ''
        raise ValueError(f'{model_path}: {runtime} reads .onnx files{also}')
    if not osp.isfile(model_path):
        raise FileNotFoundError(f'model file not found: {model_path}')
    return dict(onnxruntime=_onnxruntime, openvino=_openvino, opencv=_opencv)[runtime](
        model_path, threads
    )


def int8_target_warning(model_path: str) -> Optional[str]:
    """The warning for an int8 graph quantised for CPUs with VNNI (``int8_settings`` metadata)
    run on one without, where ONNX Runtime's kernels saturate; else None."""
    import onnx

    from .quantize import METADATA_KEY, cpu_int8_target

    props = {p.key: p.value for p in onnx.load(model_path, load_external_data=False).metadata_props}
    target = json.loads(props.get(METADATA_KEY, '{}')).get('target')
    if target in (None, 'avx2') or cpu_int8_target() != 'avx2':
        return None
    return (f'{model_path} was quantised for {target} CPUs (8-bit weights); this CPU has no VNNI, '
            "so ONNX Runtime's int8 kernels may saturate and lose accuracy: quantise with "
            '--target avx2 for it')  # fmt: skip


def _onnxruntime(model_path: str, threads: Optional[int]) -> Runner:
    import onnxruntime as ort

    warning = int8_target_warning(model_path)
    if warning:
        warnings.warn(warning, stacklevel=3)

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    # no spinning after a call: the pool would keep the cores from whatever runs next
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    session = ort.InferenceSession(model_path, options, providers=['CPUExecutionProvider'])
    name = session.get_inputs()[0].name
    return lambda inputs: session.run(None, {name: inputs})


def _openvino(model_path: str, threads: Optional[int]) -> Runner:
    import openvino as ov

    config = {'INFERENCE_PRECISION_HINT': 'f32'}
    if threads:
        config['INFERENCE_NUM_THREADS'] = threads
    compiled = ov.Core().compile_model(model_path, 'CPU', config)
    request = compiled.create_infer_request()

    def run(inputs: np.ndarray) -> List[np.ndarray]:
        request.infer([inputs])
        return [request.get_output_tensor(i).data.copy() for i in range(len(compiled.outputs))]

    return run


def _opencv(model_path: str, threads: Optional[int]) -> Runner:
    import cv2

    if threads:
        cv2.setNumThreads(threads)
    net = cv2.dnn.readNetFromONNX(model_path)
    names = list(net.getUnconnectedOutLayersNames())

    def run(inputs: np.ndarray) -> List[np.ndarray]:
        net.setInput(np.ascontiguousarray(inputs))
        return list(net.forward(names))

    return run
