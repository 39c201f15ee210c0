"""The version of streamscope's JSON layouts (``model.json``, ``params``, ``compare``, ``bench``).

Bumped whenever a field is renamed or removed. 2: ``compare`` speaks of ``before``/``after`` (was
``original``/``pruned``); every JSON output carries ``schema_version``.
"""

SCHEMA_VERSION = 2
