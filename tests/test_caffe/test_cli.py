"""tools/model_converters/caffe_ssd_to_plugin.py: options reach the config, errors exit 1."""

import importlib.util
from pathlib import Path

import pytest
from mmengine.config import Config
from tiny_ssd import write_net

TOOL = Path(__file__).parents[2] / 'tools' / 'model_converters' / 'caffe_ssd_to_plugin.py'
pytestmark = pytest.mark.filterwarnings('ignore::UserWarning')


def _tool():
    spec = importlib.util.spec_from_file_location('caffe_ssd_to_plugin', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_writes_config_and_prints_assumptions(tmp_path, capsys):
    prototxt, caffemodel, _ = write_net(tmp_path)
    labelmap = tmp_path / 'labelmap.prototxt'
    labelmap.write_text(
        'item { name: "bg" label: 0 display_name: "background" }\n'
        'item { name: "cat" label: 1 display_name: "cat" }\n'
        'item { name: "dog" label: 2 display_name: "dog" }\n'
    )
    out = tmp_path / 'out'
    argv = [prototxt, caffemodel, '--out-dir', str(out), '--labelmap', str(labelmap)]
    argv += ['--mean', '127.5', '127.5', '127.5', '--std', '127.5', '127.5', '127.5']
    assert _tool().main(argv + ['--input-order', 'rgb']) == 0
    printed = capsys.readouterr().out
    assert 'RGB input, mean [127.5, 127.5, 127.5], std [127.5, 127.5, 127.5]' in printed
    assert "classes: ['cat', 'dog']" in printed
    cfg = Config.fromfile(str(out / 'config.py'))
    assert cfg.model.data_preprocessor.bgr_to_rgb is True
    assert cfg.model.data_preprocessor.std == [127.5] * 3
    assert (out / 'model.pth').is_file()


def test_cli_error_exits_1_with_the_message(tmp_path, capsys):
    prototxt, _, _ = write_net(tmp_path)
    argv = [prototxt, str(tmp_path / 'nope.caffemodel'), '--out-dir', str(tmp_path / 'o')]
    assert _tool().main(argv) == 1
    assert 'nope.caffemodel' in capsys.readouterr().err


def test_convert_sets_mmdet_scope_itself(tmp_path):
    """The tool runs without mmdet's default scope (pytest's conftest sets it; a shell does not)."""
    from mmengine.registry import DefaultScope

    from ssd_plugin.caffe import convert

    prototxt, caffemodel, _ = write_net(tmp_path)
    with DefaultScope.overwrite_default_scope('mmengine'):
        convert(prototxt, caffemodel, tmp_path / 'out', log=lambda line: None)
        assert DefaultScope.get_current_instance().scope_name == 'mmengine'
