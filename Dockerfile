# Conveyor: a small image, built from PyPI packages only, running as a non-root user.
#   docker build -t conveyor .
#   docker run --rm conveyor db upgrade        # migrations: their own step, before serving
#   docker run -p 8000:8000 conveyor serve
# deploy/docker-compose.yml runs PostgreSQL, API processes, workers and an SMTP catcher.

# --- build: a virtualenv with Conveyor and its dependencies (wheels from PyPI) ---------------
FROM python:3.12-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/conveyor
# Dependencies first, within the versions the suite last passed with (constraints.txt), so a
# change to the code alone reuses this layer.
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
RUN /opt/conveyor/bin/pip install --constraint constraints.txt . \
    && /opt/conveyor/bin/python -m compileall -q /opt/conveyor/lib

# --- run: the virtualenv alone, no compiler, no pip cache ------------------------------------
FROM python:3.12-slim-bookworm
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/conveyor --create-home conveyor
COPY --from=build /opt/conveyor /opt/conveyor
ENV PATH=/opt/conveyor/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CONVEYOR_DATA_DIR=/var/lib/conveyor \
    CONVEYOR_HOST=0.0.0.0 \
    CONVEYOR_PORT=8000
USER 10001:10001
WORKDIR /var/lib/conveyor
VOLUME ["/var/lib/conveyor"]
EXPOSE 8000
# Liveness only (the process answers); orchestrators probe /readyz for traffic.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["conveyor"]
CMD ["serve"]
