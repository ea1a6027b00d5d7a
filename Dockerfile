# pixseek: one image for the GPU worker and the CLI (`docker compose run --rm cli ...`).
# The PyTorch wheels from PyPI bundle the CUDA runtime: on a host with the NVIDIA Container
# Toolkit, a GPU reserved in docker-compose.yml is used; without one, everything runs on CPU.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIXSEEK_DATA_DIR=/data \
    HF_HOME=/models/huggingface \
    TORCH_HOME=/models/torch

WORKDIR /app
# Dependencies first (a layer that survives code changes): install the project's requirements
# from pyproject.toml, then the code itself without touching them again.
COPY pyproject.toml README.md ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
COPY . .
RUN pip install --no-deps . \
    && useradd --create-home --uid 1000 pixseek \
    && mkdir -p /data /models \
    && chown pixseek:pixseek /data /models

# Celery refuses to be comfortable as root; the worker needs no privileges.
USER pixseek
VOLUME ["/data", "/models"]
ENTRYPOINT ["pixseek"]
CMD ["worker"]
