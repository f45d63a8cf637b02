# syntax=docker/dockerfile:1
# The slim CPU image: the REST server (scripts/serve.py, the default command), batch scoring
# (scripts/predict.py) and the drift monitor (scripts/monitor.py). It holds no torch and no Lightning:
# neither serving/ nor seismic.monitoring imports them, so the package goes in with --no-deps on top of
# requirements/serving.txt. tests/deploy/test_images.py replays this file's build steps into a venv and
# runs the command and the healthcheck from it.
#
#   docker build -t seismic-serving:0.1.0 .
#   docker run -p 8080:8080 -e MLFLOW_TRACKING_URI=http://mlflow.example:5000 seismic-serving:0.1.0
#   docker run -p 8080:8080 -v "$PWD/model:/model:ro" seismic-serving:0.1.0 \
#       scripts/serve.py host=0.0.0.0 model.source=/model
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
# the requirements layer first: it stays cached while only the code changes
COPY requirements/serving.txt /src/requirements/serving.txt
RUN /opt/venv/bin/pip install -r /src/requirements/serving.txt
COPY pyproject.toml README.md /src/
COPY seismic /src/seismic
COPY serving /src/serving
# --no-deps: the package's own dependencies would pull torch and Lightning back in
RUN /opt/venv/bin/pip install --no-deps /src

FROM ${PYTHON_IMAGE} AS runtime
# data/ (the inference log) and outputs/ (monitor state, reports) are volume mount points; created here
# with the service user as owner so that fresh named volumes inherit a writable owner
RUN groupadd --system --gid 10001 seismic \
    && useradd --system --uid 10001 --gid seismic --home-dir /var/lib/seismic --no-create-home seismic \
    && mkdir -p /var/lib/seismic/data /var/lib/seismic/outputs \
    && chown -R seismic:seismic /var/lib/seismic
COPY --from=build /opt/venv /opt/venv
COPY configs /app/configs
COPY scripts /app/scripts
# SEISMIC_ROOT anchors paths.root_dir (data/, outputs/); HOME=/tmp keeps caches (matplotlib's, Triton's)
# out of a mounted SEISMIC_ROOT and writable for any `docker run --user`
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SEISMIC_ROOT=/var/lib/seismic \
    HOME=/tmp \
    MLFLOW_DISABLE_TELEMETRY=true
WORKDIR /app
USER 10001:10001
EXPOSE 8080 9108
# the image has no curl; the probe is the server's liveness route, on serve.yaml's port
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"]
ENTRYPOINT ["python"]
# the champion of the tracking server in $MLFLOW_TRACKING_URI (this image has no SQLAlchemy, so it cannot
# open the sqlite store of env=dev); Hydra resolves the ${oc.env:...} itself, no shell is involved
CMD ["scripts/serve.py", "host=0.0.0.0", "registry.tracking_uri=${oc.env:MLFLOW_TRACKING_URI}"]
