"""run_tool: a tool's refusal is one line and exit status 1; the traceback in the log or --debug."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.logging import MMLogger

from ssd_plugin_cli.errors import run_tool

REPO = Path(__file__).parents[2]


def _refuse(argv):
    raise RuntimeError(f'Checkpoint {argv[0]} is unsafe: it holds objects ...')


def test_a_refusal_is_one_line_and_status_1(capsys):
    assert run_tool(_refuse, ['x.pth']) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'Traceback' not in err
    assert err.startswith('error: Checkpoint x.pth is unsafe: it holds objects ...')
    assert '--debug prints the traceback' in err


def test_debug_lets_the_exception_through_and_main_never_sees_the_flag():
    seen = []
    with pytest.raises(RuntimeError, match='x.pth is unsafe'):
        run_tool(lambda argv: seen.append(argv) or _refuse(argv), ['x.pth', '--debug'])
    assert seen == [['x.pth']]


def test_debug_from_the_environment(monkeypatch):
    monkeypatch.setenv('SSD_PLUGIN_DEBUG', '1')
    with pytest.raises(RuntimeError):
        run_tool(_refuse, ['x.pth'])


def test_the_status_of_main():
    assert run_tool(lambda argv: 3, []) == 3
    assert run_tool(lambda argv: None, []) == 0
    assert run_tool(lambda argv: 'a config path', []) == 0  # tools that return what they wrote


def test_ctrl_c_is_one_word_and_status_130(capsys):
    def interrupted(argv):
        raise KeyboardInterrupt

    assert run_tool(interrupted, []) == 130
    assert capsys.readouterr().err == 'interrupted\n'


def test_a_bug_keeps_its_type_in_the_line(capsys):
    def broken(argv):
        return {}['missing']

    assert run_tool(broken, []) == 1
    assert capsys.readouterr().err.startswith("error: KeyError: 'missing'")


def test_the_traceback_goes_to_the_runs_log(tmp_path, capsys):
    log_file = tmp_path / 'run.log'
    logger = MMLogger.get_instance('test_cli_errors', log_file=str(log_file))
    try:
        assert run_tool(_refuse, ['x.pth']) == 1
        for handler in logger.handlers:
            handler.flush()
        logged = log_file.read_text()
        assert 'Traceback' in logged and 'in _refuse' in logged and 'x.pth is unsafe' in logged
        assert f'traceback in {log_file}' in capsys.readouterr().err
    finally:  # later tests in this process must not find this logger current
        for handler in list(logger.handlers):
            handler.close()
            logger.removeHandler(handler)
        MMLogger._instance_dict.pop('test_cli_errors', None)


def _main_block_calls_run_tool(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.If) and "__name__ == '__main__'" in ast.unparse(node.test):
            return 'run_tool(main)' in ast.unparse(node)
    return True  # not a script


# developer scripts (benchmarks) and two analysis scripts that import nothing of the plugin
_NOT_USER_TOOLS = {'plot_curves.py', 'torchvision_na_share.py'}


@pytest.mark.parametrize(
    'tool',
    sorted(
        p.relative_to(REPO).as_posix()
        for folder in ('tools', 'tools/analysis', 'tools/deploy', 'tools/model_converters')
        for p in (REPO / folder).glob('*.py')
        if p.name not in _NOT_USER_TOOLS
    ),
)
def test_every_user_tool_ends_in_run_tool(tool):
    assert _main_block_calls_run_tool(REPO / tool), f'{tool}: end with sys.exit(run_tool(main))'


def test_a_tool_refusal_in_a_subprocess(tmp_path):
    """The whole path: a real tool, a hostile checkpoint, one line on stderr, exit status 1."""
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85R.')
    tool = REPO / 'tools' / 'model_converters' / 'mmdet_ssd_to_plugin.py'
    proc = subprocess.run(
        [sys.executable, str(tool), str(bad), str(tmp_path / 'out.pth')],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
    assert len(lines) == 1 and 'Traceback' not in proc.stderr, proc.stderr
    assert f'Checkpoint {bad} is unsafe' in lines[0] and 'os.system' in lines[0]
