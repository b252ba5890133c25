"""Last export hop: ONNX -> TensorRT FP16 engine (``model.plan``), built on the GPU that serves it.

Plans are tied to the GPU architecture and the TensorRT version, so they are
never committed: ``docker-compose.yml``'s one-shot ``engine-builder`` service
runs this package on the serving host before ``triton`` starts::

    PYTHONPATH=export:client python -m bodydance_export.tensorrt_build \\
        --cpu-repository model_repository/cpu --gpu-repository model_repository/gpu

It reads ``<cpu>/<stage>/1/model.onnx`` for every stage in
:data:`bodydance_client.contract.ONNX_STAGES` and writes
``<gpu>/<stage>/1/model.plan``. The steps, one module each:

- :mod:`.profiles`: check each ONNX against the stage's GPU ``ModelConfig``
  (from :mod:`bodydance.serving.model_configs`, the typed description the
  generated ``config.pbtxt`` is rendered from) and derive the one optimisation
  profile, batch bounds from the description (frame-path stages 1..8,
  subject-side stages 1..1);
- :mod:`.build`: the engine build, plugins registered first, layers whose sums
  overflow half precision (reductions, normalisations, softmax) pinned to FP32,
  timing cache, atomic write;
- :mod:`.run`: where ONNX Runtime, polygraphy and a GPU are present, each plan
  is run (polygraphy's ``TrtRunner``) against ONNX Runtime on the same inputs;
- :mod:`.repository`: every stage of a repository; :mod:`.cli`: the command line.

TensorRT and polygraphy are imported lazily (:mod:`.runtime`): they install only
on an NVIDIA GPU host, so where TensorRT is missing
:class:`~.runtime.TensorRTUnavailableError` says so and the command line exits
with :data:`~.cli.EXIT_NO_TENSORRT` (3). Nothing here needs torch.
"""
