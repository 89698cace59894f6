# The translate CLI on a CUDA runtime (torch 2.14.1 is built for CUDA 13.0).
#   docker build -t i2i-translate .
#   docker run --gpus all -v $PWD:/work -w /work i2i-translate train pix2pix --data maps --device cuda
FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv

WORKDIR /app
# dependencies first, so code changes do not reinstall torch
COPY pyproject.toml README.md ./
RUN pip install torch==2.14.1 torchvision==0.29.1
COPY translate ./translate
COPY training ./training
COPY serving ./serving
COPY translate_cli ./translate_cli
# the openvino extra: --engine auto runs OpenVINO in bf16 on CPUs with bf16 instructions (BENCHMARKS.md)
RUN pip install ".[openvino]"

ENTRYPOINT ["translate"]
CMD ["--help"]
