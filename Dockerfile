# Astro CLI project image: `astro dev start` (local Airflow in Docker), `astro dev pytest`, `astro deploy`.
#
# Base image. Astro Runtime 3 tags read <Airflow major.minor>-<Runtime build>; the Runtime version catalog
# (runtimeVersionsV3) maps build 3.3-8 to Apache Airflow 3.3.2 (released 2026-09-23, Astronomer's build
# 3.3.2+astro.1), the Airflow that requirements.txt pins. Runtime 3.3 ships Python 3.12, 3.13 and 3.14 (3.14 by
# default); we take the 3.12 flavour because our pins (numpy 1.26.4, pyarrow 17, PySpark 3.5.7 for
# soda-core-spark-df) have no wheels for 3.13+. Researched from Astronomer's Runtime docs and catalog, not pulled:
# no container registry or Docker engine is reachable where this project is built and tested.
FROM astrocrpublic.azurecr.io/runtime:3.3-8-python-3.12

# The base image's ONBUILD steps have run at this point: packages.txt (a JRE for the local Spark target) and
# requirements.txt were installed, then the project was copied to /usr/local/airflow. requirements.txt pins
# apache-airflow==3.3.2, which the image's 3.3.2+astro.1 satisfies (a local version label is ignored when matching),
# so Airflow is not reinstalled; the other pins (providers, PySpark, Delta, Soda, ...) are installed beside it.
LABEL io.medallion.airflow-version="3.3.2" \
      io.medallion.python-version="3.12"

# The Spark job wheel, installed non-editable (spark_jobs/ is baked into the image, not mounted): its console
# entry points medallion-{generate,bronze,silver,gold,monitor} land beside the image's python, where the local
# target's operator looks for them.
USER root
RUN pip install --no-cache-dir --no-deps /usr/local/airflow/spark_jobs
USER astro

# The local target by default; a deployment that runs on Databricks sets MEDALLION_TARGET=databricks (and
# MEDALLION_ENV, MEDALLION_USER) in its environment (`.env` locally, Deployment env vars on Astro).
ENV MEDALLION_HOME=/usr/local/airflow \
    MEDALLION_TARGET=local \
    MEDALLION_IVY_DIR=/usr/local/airflow/.cache/ivy
