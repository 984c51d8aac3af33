#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests that need one (the shared Optuna
# studies of the tune workers): a fresh cluster in a temporary directory,
# listening on a free port of 127.0.0.1 only, removed when it stops.
#
# Sourced (what .ci/run does):
#     source .ci/postgres.sh && postgres_start && trap postgres_stop EXIT
# Run as a command, it starts the server, runs the rest of the line with
# ARENA_TEST_POSTGRES_URL set, and stops the server:
#     bash .ci/postgres.sh make test
#
# The Debian package is installed when initdb is missing. The server refuses
# to run as root, so a root caller runs it as the `postgres` system user (or a
# user made for it).

_pg_bin() {
    local dir
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v initdb)")"
        return
    fi
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$dir" ]; then
        echo "postgres.sh: no initdb found; installing the postgresql package" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2
        dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    fi
    if [ -z "$dir" ]; then
        echo "postgres.sh: could not find or install initdb" >&2
        return 1
    fi
    echo "$dir"
}

_pg_as_owner() {
    # From the cluster's directory: the server's user may not read the caller's.
    if [ "$(id -u)" -eq 0 ]; then
        (cd "$_PG_DIR" && runuser -u "$_PG_USER" -- "$@")
    else
        (cd "$_PG_DIR" && "$@")
    fi
}

postgres_start() {
    local bin port
    if [ -n "${_PG_DIR:-}" ]; then
        return 0  # already started by this shell
    fi
    bin=$(_pg_bin) || return 1
    _PG_USER=$(id -un)
    if [ "$(id -u)" -eq 0 ]; then
        _PG_USER=postgres
        if ! id -u "$_PG_USER" >/dev/null 2>&1; then
            _PG_USER=arena-postgres
            id -u "$_PG_USER" >/dev/null 2>&1 || useradd --system --no-create-home "$_PG_USER"
        fi
    fi
    _PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/arena-postgres.XXXXXX")
    chmod 700 "$_PG_DIR"
    [ "$(id -u)" -eq 0 ] && chown "$_PG_USER" "$_PG_DIR"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    _PG_CTL="$bin/pg_ctl"
    _pg_as_owner "$bin/initdb" -D "$_PG_DIR/data" -U arena -A trust -E UTF8 \
        --locale=C --no-sync >"$_PG_DIR/initdb.log" 2>&1 || {
        cat "$_PG_DIR/initdb.log" >&2
        return 1
    }
    _pg_as_owner "$_PG_CTL" -D "$_PG_DIR/data" -l "$_PG_DIR/server.log" -w -t 60 \
        -o "-p $port -k $_PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=200" \
        start >/dev/null || {
        cat "$_PG_DIR/server.log" >&2
        return 1
    }
    _pg_as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U arena arena_test
    export ARENA_TEST_POSTGRES_URL="postgresql://arena@127.0.0.1:$port/arena_test"
    echo "postgres.sh: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') at $ARENA_TEST_POSTGRES_URL" >&2
}

postgres_stop() {
    if [ -z "${_PG_DIR:-}" ]; then
        return 0
    fi
    _pg_as_owner "$_PG_CTL" -D "$_PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$_PG_DIR"
    unset _PG_DIR ARENA_TEST_POSTGRES_URL
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    postgres_start
    trap postgres_stop EXIT
    "$@"
fi
