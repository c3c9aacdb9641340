# The PartnerPulse image: the worker (`partnerpulse worker`) and the dashboard
# (`python -m streams.web`); see docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY models ./models
COPY streams ./streams
COPY sinks ./sinks
COPY datagen ./datagen
COPY benchmarks ./benchmarks
RUN pip install . && useradd --system --uid 10001 --home-dir /app partnerpulse
USER partnerpulse
CMD ["partnerpulse", "worker"]
