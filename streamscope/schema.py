"""The version of streamscope's JSON layouts (``model.json``, ``params``, ``compare``, ``bench``).

Bumped whenever a field is renamed or removed. 2: ``compare`` speaks of ``before``/``after`` (was
``original``/``pruned``); every JSON output carries ``schema_version``. 3: ``arrays.zarr`` keeps per-tensor
arrays as one ragged array per kind (``tensors/<kind>/values`` with ``tensor_names`` and ``offsets``); the
randomized spectrum reports its converged values in ``top_singular_values`` and the rest as
``singular_value_lower_bounds``.
"""

SCHEMA_VERSION = 3
