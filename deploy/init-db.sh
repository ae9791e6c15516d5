#!/bin/bash
# Roles and databases of the entropy-dashboard deployment (docker-compose.yml).
#
# The postgres image runs this once, as the superuser, on a fresh data volume (it is mounted into
# /docker-entrypoint-initdb.d). It can also be run by hand against any server, e.g.
#   PGHOST=db.example PGPORT=5432 POSTGRES_USER=postgres ENTROPY_DASH_WRITER_PASSWORD=… \
#   ENTROPY_DASH_READER_PASSWORD=… MLFLOW_DB_PASSWORD=… deploy/init-db.sh
# and is idempotent (existing roles get their password reset, existing databases are kept).
#
#   entropy_writer  owns database entropy_dash: creates the schema (migrations) and writes (ingest, analyses)
#   entropy_reader  may connect to entropy_dash and SELECT, nothing else (the dashboard); its sessions are
#                   read-only by default as well
#   mlflow          owns database mlflow (the MLflow tracking server's backend store)
set -euo pipefail

: "${ENTROPY_DASH_WRITER_PASSWORD:?set ENTROPY_DASH_WRITER_PASSWORD (see .env.example)}"
: "${ENTROPY_DASH_READER_PASSWORD:?set ENTROPY_DASH_READER_PASSWORD (see .env.example)}"
: "${MLFLOW_DB_PASSWORD:?set MLFLOW_DB_PASSWORD (see .env.example)}"

psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet \
  --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
  -v writer_pw="$ENTROPY_DASH_WRITER_PASSWORD" \
  -v reader_pw="$ENTROPY_DASH_READER_PASSWORD" \
  -v mlflow_pw="$MLFLOW_DB_PASSWORD" <<'SQL'
-- roles: created if missing, password (re)set either way
SELECT 'CREATE ROLE entropy_writer LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'entropy_writer')
\gexec
SELECT 'CREATE ROLE entropy_reader LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'entropy_reader')
\gexec
SELECT 'CREATE ROLE mlflow LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mlflow')
\gexec
ALTER ROLE entropy_writer WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'writer_pw';
ALTER ROLE entropy_reader WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'reader_pw';
ALTER ROLE mlflow WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'mlflow_pw';
-- the dashboard's sessions start read-only (privileges below are what really stops writes)
ALTER ROLE entropy_reader SET default_transaction_read_only = on;

-- databases
SELECT 'CREATE DATABASE entropy_dash OWNER entropy_writer ENCODING ''UTF8'' TEMPLATE template0'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'entropy_dash')
\gexec
SELECT 'CREATE DATABASE mlflow OWNER mlflow ENCODING ''UTF8'' TEMPLATE template0'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'mlflow')
\gexec
REVOKE ALL ON DATABASE entropy_dash FROM PUBLIC;
GRANT CONNECT ON DATABASE entropy_dash TO entropy_reader;
REVOKE ALL ON DATABASE mlflow FROM PUBLIC;

-- inside entropy_dash: the reader may read every table the writer creates, now or later
\connect entropy_dash
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO entropy_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO entropy_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE entropy_writer IN SCHEMA public GRANT SELECT ON TABLES TO entropy_reader;
SQL
echo "entropy-dashboard: roles entropy_writer, entropy_reader, mlflow and databases entropy_dash, mlflow ready"
