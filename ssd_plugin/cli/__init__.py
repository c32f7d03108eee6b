"""The tools' command-line glue, apart from the runtime components of ``ssd_plugin.engine``.

Arguments, config loading and launch (:mod:`.launch`, :mod:`.data_root`, :mod:`.train_options`,
:mod:`.amp`),
which checkpoint a plain ``--resume`` continues (:mod:`.resume`) and the weight converters' shared
``main`` (:mod:`.checkpoint_conversion`). ``tools/`` imports these modules; ``import ssd_plugin``
does not.
"""
