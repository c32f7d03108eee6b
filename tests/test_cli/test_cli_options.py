"""ssd_plugin_cli's option builders: the copies of runtime tables it keeps agree with them."""

import importlib.util
from pathlib import Path

from ssd_plugin.caffe import converter
from ssd_plugin.datasets import dataset_check
from ssd_plugin.deploy import quantize, runtimes
from ssd_plugin.engine.amp import AMP_DTYPES
from ssd_plugin_cli.options import AMP_DTYPE_NAMES

REPO = Path(__file__).parents[2]


def _tool(relpath: str):
    spec = importlib.util.spec_from_file_location('opts_' + Path(relpath).stem, REPO / relpath)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_amp_dtype_choices_are_the_runtime_table():
    """--amp-dtype lists exactly the names engine.amp accepts, in its order."""
    assert AMP_DTYPE_NAMES == tuple(AMP_DTYPES)


def test_caffe_converter_help_states_the_converters_defaults():
    tool = _tool('tools/model_converters/caffe_ssd_to_plugin.py')
    assert tool.DEFAULT_MEAN == converter.DEFAULT_MEAN
    assert tool.DEFAULT_MAX_MEMORY_GIB == converter.DEFAULT_MAX_MEMORY_GIB
    assert tool.DEFAULT_MAX_PROTOTXT_MIB == converter.DEFAULT_MAX_PROTOTXT_MIB


def test_check_dataset_splits_are_the_checkers():
    assert _tool('tools/analysis/check_dataset.py').SPLITS == dataset_check.SPLITS


def test_deploy_tools_choices_are_the_runtimes():
    assert _tool('tools/deploy/eval_runtimes.py').RUNTIMES == runtimes.RUNTIMES
    tool = _tool('tools/deploy/quantize_onnx.py')
    assert tool.INT8_TARGETS == tuple(quantize.INT8_TARGETS)
    assert tool.QUANT_OPS == quantize.QUANT_OPS
