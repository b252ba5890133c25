"""Which stages run in FP16 on GPUs (shared by the FP16 check and the TensorRT build; no torch here)."""

# Stages whose outputs are depth-test decisions: in FP16 about 1 % of border pixels
# flip visibility, and their cost is small next to the generator, so the
# TensorRT build keeps them in FP32 (the FP16 figures are still measured and reported).
FP32_STAGES = frozenset({"body_geometry", "source_parser"})
