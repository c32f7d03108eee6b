"""A tool's refusal as one line on stderr, with the traceback in the run's log or behind --debug.

The plugin's tools end with ``sys.exit(run_tool(main))``: an exception that stops ``main``
(a missing file, a damaged or unsafe checkpoint, a Caffe file the converter refuses) prints
``error: <message>`` on one line and the tool exits with status 1. Its traceback goes to the
log file of the run when one was started (mmengine's ``work_dir/<timestamp>/<timestamp>.log``);
``--debug`` on the command line (or ``SSD_PLUGIN_DEBUG=1``) lets the exception through,
traceback and all, as Python would print it. A tool's parser lists that flag in its ``--help``
through :func:`add_debug_arg`.
"""

import argparse
import logging
import os
import sys
from typing import Callable, List, Optional, Sequence

__all__ = ['DEBUG_ENV', 'DEBUG_FLAG', 'add_debug_arg', 'one_line', 'run_tool']

DEBUG_FLAG = '--debug'
DEBUG_ENV = 'SSD_PLUGIN_DEBUG'

# Messages of these types say what is wrong on their own; others get their type's name.
_PLAIN = (RuntimeError, ValueError, OSError, ImportError)


def _log_files() -> List[logging.FileHandler]:
    """The file handlers of the current mmengine logger, if a run has made one."""
    from mmengine.logging import MMLogger

    if not getattr(MMLogger, '_instance_dict', None):  # none yet: do not make one
        return []
    logger = MMLogger.get_current_instance()
    handlers = [h for h in logger.handlers if isinstance(h, logging.FileHandler)]
    return [h for h in handlers if os.path.isdir(os.path.dirname(h.baseFilename))]


def _traceback_to_log(err: BaseException) -> Optional[str]:
    """Write ``err``'s traceback into the run's log file; that file, or None without one."""
    handlers = _log_files()
    if not handlers:
        return None
    record = logging.LogRecord(
        'ssd_plugin', logging.ERROR, __file__, 0, f'stopped: {one_line(err)}', None,
        (type(err), err, err.__traceback__),
    )  # fmt: skip
    for handler in handlers:
        handler.handle(record)
    return handlers[0].baseFilename


def add_debug_arg(parser: argparse.ArgumentParser) -> None:
    """List ``--debug`` in a tool's ``--help``.

    :func:`run_tool` takes the flag off the arguments before the parser sees them; the entry
    is there so that ``--help`` says the flag exists and what it does.
    """
    parser.add_argument(
        DEBUG_FLAG,
        action='store_true',
        help=f'on an error, print the traceback instead of one line (or set {DEBUG_ENV}=1)',
    )


def one_line(err: BaseException) -> str:
    """``err`` as the tool prints it: its message (with its type where that says more)."""
    text = str(err).strip() or type(err).__name__
    return text if isinstance(err, _PLAIN) else f'{type(err).__name__}: {text}'


def run_tool(main: Callable[[List[str]], object], argv: Optional[Sequence[str]] = None) -> int:
    """Run a tool's ``main(argv)``; returns the exit status for ``sys.exit``.

    Args:
        main: The tool's ``main``, taking the arguments (without ``--debug``).
        argv: The command-line arguments; default ``sys.argv[1:]``.

    Returns:
        int: ``main``'s own status if it returns an int, else 0; 1 after an exception, which
        is printed as one line (:func:`one_line`) with where its traceback is; 130 after
        Ctrl-C.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args or os.environ.get(DEBUG_ENV, '') not in ('', '0')
    args = [a for a in args if a != DEBUG_FLAG]
    try:
        status = main(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print('interrupted', file=sys.stderr)
        return 130  # as a shell reports SIGINT
    except Exception as err:
        if debug:
            raise
        log_file = _traceback_to_log(err)
        where = f'traceback in {log_file}; ' if log_file else ''
        print(f'error: {one_line(err)} ({where}{DEBUG_FLAG} prints the traceback)', file=sys.stderr)
        return 1
    return status if isinstance(status, int) else 0
