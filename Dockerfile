# The prediction service: a trained model behind `python -m pipelines.serve`.
#
#   make demo                                  # or train_gbdt --out artifacts/model
#   docker build -t arena-preference .
#   docker run --rm -p 8000:8000 \
#     -v "$PWD/api-keys:/run/secrets/arena_api_keys:ro" arena-preference
#
# The model directory is copied in from artifacts/model (train it first); the
# server verifies it against its manifest when it starts. It listens on 0.0.0.0
# inside the container, so it needs API keys: mount a file of keys (one per
# line, readable by uid 10001) at /run/secrets/arena_api_keys, or a Docker or
# Compose secret of that name; without it the server stops with exit 2. To serve
# without keys on purpose (behind a gateway that checks them), unset the file
# and say so: docker run -e ARENA_API_KEYS_FILE= ... arena-preference \
#   python -m pipelines.serve --model /app/model --host 0.0.0.0 --allow-unauthenticated
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ARENA_API_KEYS_FILE=/run/secrets/arena_api_keys

WORKDIR /app

# torch first: the pinned version is a CPU build; any other spec pulls CUDA packages.
RUN pip install --no-cache-dir torch==2.13.0

COPY pyproject.toml README.md constraints.txt ./
COPY features ./features
COPY models ./models
COPY pipelines ./pipelines
COPY configs ./configs
RUN pip install --no-cache-dir -c constraints.txt '.[serve]'

COPY artifacts/model /app/model

RUN useradd --create-home --uid 10001 app
USER app

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)" || exit 1

# SIGTERM (docker stop) lets in-flight requests finish before the server exits.
CMD ["python", "-m", "pipelines.serve", "--model", "/app/model", "--host", "0.0.0.0", "--port", "8000"]
