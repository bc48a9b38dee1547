#!/bin/sh
# Run once by the postgres image on an empty data directory (docker-entrypoint-initdb.d): the database of
# Cerbos' own policy store, beside Heimdall's, with the tables its `postgres` driver expects.
set -eu
createdb --username "$POSTGRES_USER" cerbos
psql --username "$POSTGRES_USER" --dbname cerbos -v ON_ERROR_STOP=1 --file /cerbos/postgres.sql
