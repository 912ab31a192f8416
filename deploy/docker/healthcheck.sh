#!/bin/bash
# Container health check for the gateway: healthy when GET /healthz answers 200, which the
# gateway does only while at least one worker is live. Plain bash /dev/tcp: the runtime image
# carries no curl or wget. Usage: switchboard-healthcheck [PORT] (default 8080).
port=${1:-8080}
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
IFS= read -r -t 2 status <&3 || exit 1
case $status in
  "HTTP/1."?" 200 "*) exit 0 ;;
  *) echo "healthz: ${status%$'\r'}"; exit 1 ;;
esac
