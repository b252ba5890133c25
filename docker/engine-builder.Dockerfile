# One-shot job on the serving GPU: export the stages at 512 px and build TensorRT FP16 plans.
# The NGC PyTorch image carries CUDA, PyTorch, TensorRT and polygraphy of matching versions.
FROM nvcr.io/nvidia/pytorch:24.10-py3
WORKDIR /workspace/bodydance
COPY pyproject.toml README.md ./
COPY bodydance ./bodydance
COPY client ./client
COPY export ./export
# torch comes with the image; install the rest of the export extra without touching it.
RUN pip install --no-cache-dir --no-deps -e . \
 && pip install --no-cache-dir "onnx>=1.15" "onnx-graphsurgeon>=0.5" "onnxruntime>=1.17" "typer>=0.12" "rich>=13" \
    "tritonclient[grpc]==2.50.0" "pillow>=10" "av>=12"
