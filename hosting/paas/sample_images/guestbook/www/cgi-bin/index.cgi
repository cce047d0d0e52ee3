#!/bin/sh
# The guestbook, run by busybox httpd for each request (a directory without index.html runs cgi-bin/index.cgi):
#   GET /          the latest entries, newest first, and a form to sign it;
#   POST /         adds the form's `entry` (1 to 500 characters), then 303 to /;
#   GET /healthz/  200 once the database takes queries (httpd answers /healthz with a redirect here).
# Every request uses the database at $DATABASE_URL (a bound managed PostgreSQL) through psql; the first one makes
# the table. An entry reaches SQL as a psql variable (:'entry', quoted by psql), never as SQL text.
set -f  # the request's words are split below: no globbing
MAX_BODY=4096
MAKE_TABLE='DO $$ BEGIN
  IF to_regclass($t$guestbook$t$) IS NULL THEN
    PERFORM pg_advisory_xact_lock(hashtext($t$strata guestbook$t$));  -- two first requests at once make it once
    CREATE TABLE IF NOT EXISTS guestbook (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      entry text NOT NULL,
      signed_at timestamptz NOT NULL DEFAULT now());
  END IF;
END $$;'

reply() {  # STATUS BODY [CONTENT-TYPE]
  printf 'Status: %s\r\nContent-Type: %s\r\nCache-Control: no-store\r\n\r\n%s' \
    "$1" "${3:-text/plain; charset=utf-8}" "$2"
}

db() {  # psql running stdin's SQL in one transaction, given -v NAME=VALUE arguments: its output, or its error
  psql "$DATABASE_URL" -X -q -A -t -v ON_ERROR_STOP=1 --single-transaction "$@" -f - 2>&1
}

unavailable() {  # psql's error: to the app's log (stderr), never to the visitor (it names the server and login)
  printf 'guestbook: %s\n' "$1" | head -n 1 >&2
  reply "503 Service Unavailable" "the guestbook cannot reach its database just now; try again in a moment
"
}

page() {
  title=$(httpd -e "${TITLE:-Guestbook}")
  if ! entries=$(db <<SQL
$MAKE_TABLE
SELECT format(E'<p>%s signed; the latest first.</p>\n<ul>\n%s</ul>', (SELECT count(*) FROM guestbook),
  coalesce(string_agg(format(E'<li>%s <small>%s</small></li>\n',
    replace(replace(replace(entry, '&', '&amp;'), '<', '&lt;'), '>', '&gt;'),
    to_char(signed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"')), '' ORDER BY id DESC), ''))
FROM (SELECT id, entry, signed_at FROM guestbook ORDER BY id DESC LIMIT 100) AS latest;
SQL
  ); then
    unavailable "$entries"
    return
  fi
  reply "200 OK" "<!doctype html>
<html><head><meta charset=\"utf-8\"><title>$title</title></head><body>
<h1>$title</h1>
<form method=\"post\" action=\"/\"><input name=\"entry\" maxlength=\"500\" required autofocus> <button>Sign</button></form>
$entries
<p><small>served by instance $STRATA_INSTANCE of revision $STRATA_REVISION</small></p>
</body></html>
" "text/html; charset=utf-8"
}

sign() {
  length=${CONTENT_LENGTH:-0}
  case $length in '' | *[!0-9]*) length=0 ;; esac
  if [ "$length" -gt "$MAX_BODY" ]; then
    reply "413 Payload Too Large" "a form of at most $MAX_BODY bytes, please
"
    return
  fi
  raw=
  IFS='&'
  for pair in $(head -c "$length"); do
    case $pair in entry=*) raw=${pair#entry=} ;; esac
  done
  unset IFS
  entry=$(httpd -d "$raw")
  if ! added=$(db -v entry="$entry" <<SQL
$MAKE_TABLE
INSERT INTO guestbook (entry) SELECT btrim(:'entry') WHERE char_length(btrim(:'entry')) BETWEEN 1 AND 500 RETURNING id;
SQL
  ); then
    unavailable "$added"
  elif [ -z "$added" ]; then
    reply "400 Bad Request" "sign with an entry of 1 to 500 characters (the form's field \`entry\`)
"
  else
    printf 'Status: 303 See Other\r\nLocation: /\r\nContent-Type: text/plain\r\n\r\nsigned\n'
  fi
}

if [ -z "${DATABASE_URL:-}" ]; then
  reply "503 Service Unavailable" "no database: bind a PostgreSQL service to this app (DATABASE_URL is not set)
"
  exit 0
fi
case "$REQUEST_METHOD ${REQUEST_URI%%\?*}" in
  "GET /healthz/" | "HEAD /healthz/")
    if out=$(echo "SELECT 1;" | db); then reply "200 OK" "ok
"; else unavailable "$out"; fi ;;
  "GET /" | "HEAD /") page ;;
  "POST /") sign ;;
  *) reply "404 Not Found" "not found
" ;;
esac
