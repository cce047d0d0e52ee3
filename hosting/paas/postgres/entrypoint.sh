#!/bin/sh
# PID 1 of strata/postgres:15 (as the image's user, postgres): make the cluster on the first start, then become the
# server (`exec`, so the engine's stop signal, SIGINT, reaches postgres itself: a fast shutdown).
# env: POSTGRES_PASSWORD (the first start only: the password of the superuser postgres and of POSTGRES_USER),
#      POSTGRES_USER (default app: a role owning POSTGRES_DB, default app), PORT (default 5432), PGDATA.
# The password reaches initdb through a pipe and the role's password is copied from the superuser's SCRAM
# verifier: it is on no command line, in no SQL text, in no log; and the server does not inherit it.
set -eu
: "${PGDATA:=/var/lib/postgresql/data/pgdata}" "${PORT:=5432}" "${POSTGRES_USER:=app}" "${POSTGRES_DB:=app}"
export PGDATA
say() { printf 'strata-postgres: %s\n' "$*"; }   # printf: echo would read backslashes
fail() { say "$@" >&2; exit 1; }
ident() { printf '"%s"' "$(printf '%s' "$1" | sed 's/"/""/g')"; }   # $1 as an SQL identifier
literal() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }   # $1 as an SQL string

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  [ -n "${POSTGRES_PASSWORD:-}" ] || fail "POSTGRES_PASSWORD is not set: the first start makes the cluster with it"
  for value in "$POSTGRES_PASSWORD" "$POSTGRES_USER" "$POSTGRES_DB"; do   # initdb and postgres --single read lines
    case $value in *'
'*) fail "POSTGRES_PASSWORD, POSTGRES_USER and POSTGRES_DB must be one line each" ;; esac
  done
  say "making the cluster in $PGDATA (superuser postgres; role $POSTGRES_USER; database $POSTGRES_DB)"
  [ ! -e "$PGDATA" ] || [ -z "$(ls -A "$PGDATA")" ] || fail "$PGDATA holds files but no cluster: move them away"
  # made aside and renamed when complete: a first start cut short leaves no half cluster to be taken for one
  new=$PGDATA.new
  rm -rf "$new"
  printf '%s\n' "$POSTGRES_PASSWORD" | initdb --pgdata="$new" --username=postgres --pwfile=/dev/stdin \
    --auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  # Sized for a container of 128 MiB (initdb sizes for the host); ALTER SYSTEM overrides any of it.
  cat >> "$new/postgresql.conf" <<'CONF'

# strata/postgres
shared_buffers = 16MB
max_connections = 50
dynamic_shared_memory_type = posix	# /dev/shm: Docker's 64 MiB tmpfs
jit = off	# the image has no JIT provider
CONF
  # The apps' role over TCP with its password; the superuser over the socket only, as itself (a shell in the
  # container), never from the network.
  printf '%s\n' 'local all all peer' 'host all postgres 0.0.0.0/0 reject' 'host all postgres ::/0 reject' \
    'host all all 0.0.0.0/0 scram-sha-256' 'host all all ::/0 scram-sha-256' > "$new/pg_hba.conf"
  user=$(ident "$POSTGRES_USER")
  {   # one statement a line
    if [ "$POSTGRES_USER" != postgres ]; then
      copy="UPDATE pg_authid SET rolpassword = (SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres')"
      printf '%s\n' "CREATE ROLE $user LOGIN" "$copy WHERE rolname = $(literal "$POSTGRES_USER")"
    fi
    [ "$POSTGRES_DB" = postgres ] || printf '%s\n' "CREATE DATABASE $(ident "$POSTGRES_DB") OWNER $user"
  } | postgres --single -D "$new" -c exit_on_error=on -c log_min_error_statement=panic postgres >/dev/null ||
    fail "could not make role $POSTGRES_USER and database $POSTGRES_DB"
  mv -T "$new" "$PGDATA"   # rename(2): over an empty directory too
  say "cluster made"
fi
unset POSTGRES_PASSWORD
# These follow the container, not the cluster: on the command line (over ALTER SYSTEM) at every start.
exec postgres -D "$PGDATA" -c listen_addresses='*' -c port="$PORT" -c unix_socket_directories=/run/postgresql "$@"
