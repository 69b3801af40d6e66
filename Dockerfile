# jobs worker image: slim Python, non-root, the jobs wheel (migrations inside), no dev tools.
#   docker build -t jobs .          docker run --rm jobs --help
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY jobs ./jobs
COPY migrations ./migrations
# pyproject force-includes migrations/ into the wheel as jobs/migrations.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
# The versions CI tested (constraints.txt), not whatever is newest today.
COPY constraints.txt /tmp/constraints.txt
RUN pip install -c /tmp/constraints.txt "$(ls /wheels/jobs-*.whl)[cache]" && rm -rf /wheels /tmp/constraints.txt \
    && useradd --system --uid 10001 --create-home --home-dir /home/jobs jobs
USER jobs
WORKDIR /home/jobs
# In a container the metrics/health endpoint listens on every interface of the
# container's own network; nothing is published unless compose says so.
ENV WORKER_HTTP_HOST=0.0.0.0 \
    WORKER_HTTP_PORT=9464
EXPOSE 9464
ENTRYPOINT ["jobs"]
CMD ["worker"]
