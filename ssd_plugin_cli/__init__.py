"""The plugin's tools' front door: command-line options and error reporting, without torch.

Every tool in ``tools/`` builds its parser from this package and parses its arguments before it
imports ``ssd_plugin``, mmdet or torch, so ``--help`` and a mistyped option answer at once
instead of after the seconds that importing the detection stack takes. The modules import only
the standard library and mmengine's ``DictAction`` (mmengine's config module, which imports no
torch):

- :mod:`.errors`: ``run_tool`` (a refusal as one line, the traceback in the log or behind
  ``--debug``) and ``add_debug_arg``;
- :mod:`.options`: the option builders the tools share (launch, ``--data-root``, ``--amp``,
  training options, the checkpoint converters' parser).

What the options do to a config lives with the runtime code, in :mod:`ssd_plugin.cli`.
"""
