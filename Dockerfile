# syntax=docker/dockerfile:1
# The entropy-dashboard image: the `entropy-dash` CLI (ingest scheduler, reports, Streamlit dashboard) and the
# MLflow tracking server, with every Python dependency pinned by constraints.txt.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# the project with its dependencies at the versions of constraints.txt (the set `make test` runs against),
# installed in place: the Streamlit pages are plain files next to dashboard/app.py
COPY constraints.txt pyproject.toml README.md ./
COPY entropy_dash ./entropy_dash
COPY db ./db
COPY ingest ./ingest
COPY models ./models
COPY analysis ./analysis
COPY plots ./plots
COPY reports ./reports
COPY dashboard ./dashboard
RUN pip install -c constraints.txt -e . \
    && entropy-dash --help > /dev/null

COPY deploy/entrypoint.sh /usr/local/bin/entropy-dash-entrypoint
RUN chmod 0755 /usr/local/bin/entropy-dash-entrypoint \
    && useradd --create-home --uid 10001 --user-group app \
    && mkdir -p /reports /mlartifacts /config \
    && chown app:app /reports /mlartifacts

USER app
EXPOSE 8501 5000
ENTRYPOINT ["entropy-dash-entrypoint"]
# `entropy-dash dashboard` runs Streamlit headless itself; inside the container it listens on every interface
# (the compose file publishes the port on the host's loopback only)
CMD ["dashboard", "--host", "0.0.0.0", "--port", "8501", "--no-browser"]
