#!/bin/sh
# PID 1 of strata/hello: serve HTTP with busybox nc, one handler process per connection.
# A handler asks PID 1 to exit (USR1, from /crash); TERM and INT stop it at once (docker stop).
trap 'echo "crash requested"; kill "$server" 2>/dev/null; exit 3' USR1
trap 'kill "$server" 2>/dev/null; exit 0' TERM INT
echo "hello: tenant=$STRATA_TENANT app=$STRATA_APP revision=$STRATA_REVISION instance=$STRATA_INSTANCE port=$PORT"
nc -ll -p "$PORT" -e /bin/sh /app/handler.sh &
server=$!
wait "$server"
