# The production server for the GPU profile: NGC tritonserver (TensorRT backend for the plans,
# python backend for subject_reconstruction) plus this project installed with its `server` extra,
# so the python-backend stage can import mediapipe, onnxruntime and the bodydance package.
FROM nvcr.io/nvidia/tritonserver:24.10-py3

# curl: the compose health check. libgl1, libglib2.0-0: OpenCV (pulled in by mediapipe) loads them.
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/bodydance
COPY pyproject.toml README.md ./
COPY bodydance ./bodydance
COPY client ./client
COPY export ./export
# The extra also brings nvidia-pytriton (the cpu profile's embedded server); unused here, harmless.
RUN pip install --no-cache-dir ".[server]" \
 && python3 -c "import mediapipe, onnxruntime, bodydance.stages.reconstruction.subject"

EXPOSE 8000 8001 8002
