#!/usr/bin/env bash
# Runs the Pushpin peer in the foreground: writes a private config (ports given, run/log dirs
# under DIR) and execs `pushpin` (condure + zurl + pushpin-proxy + pushpin-handler), routing
# every path to the GRIP origin (grip-backend.mjs) over WebSocket-over-HTTP.
# Usage: pushpin-peer.sh DIR HTTP_PORT ORIGIN_PORT PUBLISH_PORT PUSH_IN_PORT SUB_PORT COMMAND_PORT
set -euo pipefail
dir=$1 http_port=$2 origin_port=$3 publish_port=$4 push_in_port=$5 sub_port=$6 command_port=$7
mkdir -p "$dir/run" "$dir/log"
cat > "$dir/routes" <<EOF
* 127.0.0.1:$origin_port,over_http
EOF
# Based on Debian's pushpin.conf.condure. message_rate/message_hwm are raised from 2500/25000:
# the defaults throttle publishing far below what a fan-out benchmark asks.
cat > "$dir/pushpin.conf" <<EOF
[global]
include={libdir}/internal.conf
rundir=$dir/run
ipc_prefix=pushpin-
port_offset=0
stats_connection_ttl=120

[runner]
services=condure,zurl,pushpin-proxy,pushpin-handler
http_port=127.0.0.1:$http_port
logdir=$dir/log
log_level=1
client_buffer_size=8192
client_maxconn=50000
condure_bin=condure
zurl_bin=zurl

[proxy]
routesfile=$dir/routes
zurl_out_specs=ipc://$dir/run/pushpin-zurl-in
zurl_out_stream_specs=ipc://$dir/run/pushpin-zurl-in-stream
zurl_in_specs=ipc://$dir/run/pushpin-zurl-out
debug=false
auto_cross_origin=false
sig_iss=pushpin
sig_key=bench-only-not-a-secret
updates_check=off

[handler]
push_in_spec=tcp://127.0.0.1:$push_in_port
push_in_sub_specs=tcp://127.0.0.1:$sub_port
push_in_sub_connect=false
push_in_http_addr=127.0.0.1
push_in_http_port=$publish_port
push_in_http_max_headers_size=10000
push_in_http_max_body_size=10000000
stats_spec=ipc://{rundir}/{ipc_prefix}stats
command_spec=tcp://127.0.0.1:$command_port
message_rate=10000000
message_hwm=1000000
message_wait=5000
id_cache_ttl=60
connection_subscription_max=20
subscription_linger=60
stats_subscription_ttl=60
stats_report_interval=10
stats_format=tnetstring
EOF
exec pushpin --config "$dir/pushpin.conf" --merge-output
