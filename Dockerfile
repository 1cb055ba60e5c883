# One image for the bot and the sidecar (`python -m bot` / `python -m sidecar`); the `load` target
# adds Locust for docker-compose's `load` profile.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE} AS app

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin botwatch

# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml ./
COPY bot/__init__.py bot/__init__.py
COPY servicekit/__init__.py servicekit/__init__.py
COPY sidecar/__init__.py sidecar/__init__.py
COPY monitoring/__init__.py monitoring/__init__.py
RUN pip install -e .

COPY bot bot
COPY servicekit servicekit
COPY sidecar sidecar
COPY monitoring monitoring
COPY slo.yaml ./
COPY elasticsearch elasticsearch
COPY kibana kibana
RUN mkdir -p /app/var /var/log/botwatch && chown botwatch:botwatch /app/var /var/log/botwatch

USER botwatch
EXPOSE 18789 8080 9901
STOPSIGNAL SIGTERM
CMD ["python", "-m", "bot"]

FROM app AS load
ARG LOCUST_VERSION
USER root
RUN pip install "locust==${LOCUST_VERSION}"
COPY loadtest loadtest
USER botwatch
EXPOSE 8089
CMD ["locust", "-f", "loadtest/locustfile.py"]
