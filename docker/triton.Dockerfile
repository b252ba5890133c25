# The production server: NGC tritonserver plus what the python-backend stage
# (MediaPipe reconstruction) and the bodydance package need.
FROM nvcr.io/nvidia/tritonserver:24.10-py3
WORKDIR /opt/bodydance
COPY pyproject.toml README.md ./
COPY bodydance ./bodydance
COPY client ./client
COPY export ./export
RUN pip install --no-cache-dir "numpy<2" "protobuf<5" "onnxruntime>=1.17" "mediapipe==0.10.21" \
 && pip install --no-cache-dir --no-deps -e . \
 && pip install --no-cache-dir "tritonclient[grpc]==2.50.0" "pillow>=10" "av>=12" "typer>=0.12" "rich>=13"
