# Astro CLI project image: `astro dev start` (local Airflow in Docker), `astro dev pytest`, `astro deploy`.
#
# Base image. Astro Runtime 3 tags read <Airflow major.minor>-<Runtime build>; the Runtime version catalog
# (runtimeVersionsV3) maps build 3.3-8 to Apache Airflow 3.3.2 (released 2026-09-23, Astronomer's build
# 3.3.2+astro.1), the Airflow that requirements.txt pins. Runtime 3.3 ships Python 3.12, 3.13 and 3.14; we take the
# 3.12 flavour (the Astro CLI's default Python, pkg/airflowrt DefaultPython) because our pins (numpy 1.26.4, pyarrow
# 17, PySpark 3.5.7 for soda-core-spark-df) have no wheels for 3.13+. The `-base` flavour has no ONBUILD steps: the
# plain one would `pip install -r requirements.txt` (top-level pins, everything below them unlocked) before we could
# act; here the steps are ours, in the same order (system packages, Python packages, then the project).
# Researched from Astronomer's docs and the Astro CLI's source, not pulled: no container registry is reachable where
# this project is built and tested (README, "What was validated here").
FROM astrocrpublic.azurecr.io/runtime:3.3-8-python-3.12-base AS runtime

# The Debian release packages.txt was checked against (tests/deploy/test_astro_project.py asks that release's package
# index for every line). Debian 12 carries openjdk-17, which Spark 3.5 supports; Debian 13 has only 21 and 25. The
# build stops here if the Runtime moved to another release, instead of failing later or installing another Java.
ARG DEBIAN_RELEASE=bookworm
LABEL io.medallion.airflow-version="3.3.2" \
      io.medallion.python-version="3.12" \
      io.medallion.debian-release="${DEBIAN_RELEASE}"

USER root
COPY packages.txt /tmp/medallion/packages.txt
RUN . /etc/os-release \
 && if [ "$VERSION_CODENAME" != "$DEBIAN_RELEASE" ]; then \
      echo "packages.txt was checked against Debian $DEBIAN_RELEASE, the runtime is $VERSION_CODENAME" >&2; exit 1; fi \
 && apt-get update \
 && xargs -a /tmp/medallion/packages.txt apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* \
 && java -version

# Locked runtime dependencies only (requirements.lock: no test tooling). apache-airflow==3.3.2 is satisfied by the
# image's 3.3.2+astro.1 (a local version label is ignored when matching), so Airflow is not reinstalled; `pip check`
# fails the build if a pin disagrees with what the Runtime ships.
COPY requirements.lock /tmp/medallion/requirements.lock
RUN pip install --no-cache-dir -r /tmp/medallion/requirements.lock && pip check

# The project (what ONBUILD would copy), then the Spark job wheel, installed non-editable from it without dependencies
# (they are in the lock): its console entry points medallion-{generate,bronze,silver,gold,monitor} land beside the
# image's python, where the local target's operator looks for them. The lakehouse and Ivy folders exist, owned by
# astro, so the named volumes docker-compose.override.yml mounts there start writable for the astro user.
COPY --chown=astro:0 . /usr/local/airflow
RUN pip install --no-cache-dir --no-deps /usr/local/airflow/spark_jobs \
 && mkdir -p /usr/local/airflow/.lakehouse /usr/local/airflow/.cache/ivy \
 && chown -R astro:0 /usr/local/airflow/.lakehouse /usr/local/airflow/.cache
USER astro

# The local target by default; a deployment that runs on Databricks sets MEDALLION_TARGET=databricks (and
# MEDALLION_ENV, MEDALLION_USER) in its environment (`.env` locally, Deployment env vars on Astro). Tasks that start
# Spark take a slot of the medallion_spark pool (declared with its slots in airflow_settings.yaml).
# Spark's driver heap is sized for a container shared with the scheduler: pool slots x driver memory is what the
# local jobs may take at once (README, "Running with astro dev start").
ENV MEDALLION_HOME=/usr/local/airflow \
    MEDALLION_TARGET=local \
    MEDALLION_IVY_DIR=/usr/local/airflow/.cache/ivy \
    MEDALLION_SPARK_POOL=medallion_spark \
    MEDALLION_SPARK_DRIVER_MEMORY=2g

# `astro dev pytest` image: the runtime image plus the locked test tools, never deployed.
#   docker build --target pytest -t medallion-pytest . && astro dev pytest --image-name medallion-pytest tests/dags
FROM runtime AS pytest
USER root
COPY requirements-dev.lock /tmp/medallion/requirements-dev.lock
RUN pip install --no-cache-dir -r /tmp/medallion/requirements-dev.lock && pip check
USER astro

# The production image (the last stage: what `astro dev start` and `astro deploy` build): runtime dependencies only.
FROM runtime AS production
