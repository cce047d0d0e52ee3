#!/bin/sh
# One HTTP/1.1 exchange on stdin/stdout (the connection), then close.
cr=$(printf '\r')
read -r method target _version || exit 0
length=0
while read -r line; do
  line=${line%"$cr"}
  [ -z "$line" ] && break
  case "$line" in [Cc]ontent-[Ll]ength:*) length=${line#*:}; length=${length# } ;; esac
done
# Read (and drop) a request body, so closing does not reset the connection under the client.
[ "$length" -gt 0 ] 2>/dev/null && head -c "$length" >/dev/null

respond() {  # status, body
  printf 'HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %s\r\nConnection: close\r\n\r\n' "$1" "${#2}"
  [ "$method" = HEAD ] || printf '%s' "$2"
}

case "${target%%\?*}" in
  /healthz) respond "200 OK" "ok
" ;;
  /slow)  # an answer that takes a while: a request in flight while the instance is removed
    sleep 4
    respond "200 OK" "slow from instance=$STRATA_INSTANCE
" ;;
  /crash)
    respond "200 OK" "crashing
"
    kill -USR1 1 ;;
  *) respond "200 OK" "${GREETING:-hello} from tenant=$STRATA_TENANT app=$STRATA_APP revision=$STRATA_REVISION instance=$STRATA_INSTANCE
" ;;
esac
