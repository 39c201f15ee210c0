"""``streamscope sensitivity``: what quantizing each layer does to this model's outputs, measured on the
streamed forward pass of the float model.

- ``hooks``: what each decoder Linear receives (its real inputs, or their Gram matrix) and whether a norm
  of its layer feeds it;
- ``local``: every scheme's output error per Linear on those inputs (SQNR, relative MSE);
- ``smooth``: SmoothQuant's smoothing per alpha, W8A8 simulated, for the Linears a norm feeds;
- ``stream``: a second hidden-state stream through the quantized layers (per-layer divergence, then
  next-token KL, top-1 agreement and perplexity);
- ``recipe``: which scheme each Linear gets (read from YAML; written as an llm-compressor recipe and as
  ``llama-quantize --tensor-type`` lines);
- ``plan``: the Linears to keep at a higher precision until the KL meets a target;
- ``run``: one run from the options to ``sensitivity.json`` and its files.
"""
