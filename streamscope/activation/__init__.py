"""Activation analysis: a layer-by-layer forward pass streamed from the shards (``streamscope activations``).

Rooms: ``config`` (the YAML keys and overrides), ``data`` (calibration samples), ``skeleton`` (the model on
the meta device, its decoder layers), ``weights`` (one part's tensors read, loaded, freed), ``forward`` (the
streamed pass), ``stats`` (mergeable activation statistics), ``collect`` (watched modules and their hooks),
``profile`` (one run), ``export`` (the files).
"""
