"""QuietRunner's logger: the config dump in the log file only, the hooks table at DEBUG."""

import pytest

from ssd_plugin.engine import QuietRunner
from ssd_plugin.engine.quiet_runner import ConsoleConfigFilter, QuietLogFilter

CONFIG = 'Config:\nmodel = dict(type="SSD")'
HOOKS = 'Hooks will be executed in the following order:\nbefore_run:\n(VERY_HIGH) RuntimeInfoHook'


def _logger(tmp_path, name: str, level: str):
    """The logger ``QuietRunner.build_logger`` makes, on a runner with only what it reads."""
    runner = QuietRunner.__new__(QuietRunner)
    runner._experiment_name = name
    return runner.build_logger(log_level=level, log_file=str(tmp_path / 'ts.log'))


@pytest.mark.parametrize('level', ['INFO', 'DEBUG'])
def test_config_goes_to_the_log_file_and_the_hooks_table_to_debug(tmp_path, capsys, level):
    logger = _logger(tmp_path, f'quiet_{level}', level)
    logger.info(CONFIG)
    logger.info(HOOKS)
    logger.info('Epoch(train) [1][1/1]')
    for handler in logger.handlers:
        handler.flush()
    console = capsys.readouterr().out
    log_file = (tmp_path / 'ts.log').read_text()
    assert 'model = dict(type="SSD")' not in console
    assert 'model = dict(type="SSD")' in log_file
    assert ('(VERY_HIGH) RuntimeInfoHook' in console) == (level == 'DEBUG')
    assert ('(VERY_HIGH) RuntimeInfoHook' in log_file) == (level == 'DEBUG')
    assert 'Epoch(train) [1][1/1]' in console and 'Epoch(train) [1][1/1]' in log_file
    # the same logger again (a second runner of the experiment): one filter each, not two
    with pytest.warns(UserWarning, match='has been created'):  # mmengine: the same instance
        logger = _logger(tmp_path, f'quiet_{level}', level)
    assert sum(isinstance(f, QuietLogFilter) for f in logger.filters) == 1
    consoles = [f for h in logger.handlers for f in h.filters if isinstance(f, ConsoleConfigFilter)]
    assert len(consoles) == 1
