"""What the tools' options do, apart from the runtime components of ``ssd_plugin.engine``.

Config loading and launch (:mod:`.launch`, :mod:`.data_root`, :mod:`.train_options`,
:mod:`.amp`), which checkpoint a plain ``--resume`` continues (:mod:`.resume`) and the weight
converters' shared ``main`` (:mod:`.checkpoint_conversion`). The options themselves are built by
:mod:`ssd_plugin_cli` (no torch): the tools parse first and import these modules afterwards;
``import ssd_plugin`` does not import them.
"""
