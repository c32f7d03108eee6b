"""tools/model_converters/caffe_ssd_to_plugin.py: options reach the config; a refusal is one
line and exit status 1."""

import importlib.util
from pathlib import Path

import pytest
from mmengine.config import Config
from tiny_ssd import write_net

from ssd_plugin_cli.errors import run_tool

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
    assert run_tool(_tool().main, argv + ['--input-order', 'rgb']) == 0
    printed = capsys.readouterr().out
    assert 'RGB input, mean [127.5, 127.5, 127.5], std [127.5, 127.5, 127.5]' in printed
    assert "classes: ['cat', 'dog']" in printed
    cfg = Config.fromfile(str(out / 'config.py'))
    assert cfg.model.data_preprocessor.bgr_to_rgb is True
    assert cfg.model.data_preprocessor.std == [127.5] * 3
    assert (out / 'model.pth').is_file()


def test_cli_error_exits_1_with_one_line(tmp_path, capsys):
    prototxt, _, _ = write_net(tmp_path)
    argv = [prototxt, str(tmp_path / 'nope.caffemodel'), '--out-dir', str(tmp_path / 'o')]
    assert run_tool(_tool().main, argv) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: caffemodel not found: ') and 'nope.caffemodel' in err
    assert err.count('\n') == 1 and 'Traceback' not in err


def test_cli_memory_limit(tmp_path, capsys):
    """--max-memory-gib below the tiny net's estimate refuses it, naming the flag."""
    prototxt, caffemodel, _ = write_net(tmp_path)
    argv = [prototxt, caffemodel, '--out-dir', str(tmp_path / 'o'), '--max-memory-gib', '1e-6']
    assert run_tool(_tool().main, argv) == 1
    err = capsys.readouterr().err
    assert f'error: {prototxt!r}: converting this net needs about' in err
    assert 'above the limit of 1e-06 GiB' in err and '--max-memory-gib' in err


def test_cli_prototxt_size_limit(tmp_path, capsys):
    prototxt, caffemodel, _ = write_net(tmp_path)
    argv = [prototxt, caffemodel, '--out-dir', str(tmp_path / 'o'), '--max-prototxt-mib', '0.001']
    assert run_tool(_tool().main, argv) == 1
    err = capsys.readouterr().err
    assert 'more than the 0.001 MiB a Caffe text file is allowed' in err
    assert '--max-prototxt-mib 1' in err


def test_convert_sets_mmdet_scope_itself(tmp_path):
    """The tool runs without mmdet's default scope (pytest's conftest sets it; a shell does not)."""
    from mmengine.registry import DefaultScope

    from ssd_plugin.caffe.converter import convert

    prototxt, caffemodel, _ = write_net(tmp_path)
    with DefaultScope.overwrite_default_scope('mmengine'):
        convert(prototxt, caffemodel, tmp_path / 'out', log=lambda line: None)
        assert DefaultScope.get_current_instance().scope_name == 'mmengine'
