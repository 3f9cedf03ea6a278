#!/usr/bin/env bash
# `make demo` / `make demo-stop`: a Nomad agent on loopback with the plugin,
# running the pool session job (example/session.nomad.hcl, pool = true) and
# the gateway (example/gateway.nomad.hcl). `start` returns once the gateway
# has a warm session and prints its one URL: every browser that opens it gets
# a session of its own. Running it again reuses the agent and the jobs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIR=$ROOT/build/demo
NOMAD=$ROOT/build/nomad
export NOMAD_ADDR=http://127.0.0.1:4646
JOB=pixelstream-demo
SESSION_JOB=pixelstream-session
GATEWAY_JOB=pixelstream-gateway
GATEWAY_PORT=${GATEWAY_PORT:-8080}
OPERATOR_PORT=${OPERATOR_PORT:-8081}
# The operator endpoints (/api/sessions, /api/queue, /metrics): their URL
# and Bearer token, for `source`.
OPERATOR_ENV=$DIR/operator.env
# DEMO_INTERFACE=eth0: sessions take their ports (player page, TURN) on that
# interface instead of loopback, so browsers on other machines can play.
DEMO_INTERFACE=${DEMO_INTERFACE:-}

agent_running() {
  [ -f "$DIR/agent.pid" ] && kill -0 "$(cat "$DIR/agent.pid")" 2>/dev/null
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "timed out waiting for $what; agent log: $DIR/agent.log" >&2
      return 1
    fi
    sleep 0.5
  done
}

# quiet COMMAND...: run it, showing its output only when it fails.
quiet() {
  local out
  if ! out=$("$@" 2>&1); then
    echo "$out" >&2
    return 1
  fi
}

driver_healthy() {
  [ "$("$NOMAD" node status -self -t '{{ (index .Drivers "pixelstream").Healthy }}' 2>/dev/null)" = true ]
}

start() {
  mkdir -p "$DIR/plugins"
  chmod 755 "$DIR" "$DIR/plugins"
  if ! agent_running; then
    if curl -sf "$NOMAD_ADDR/v1/agent/self" >/dev/null 2>&1; then
      echo "another Nomad agent already listens on $NOMAD_ADDR; stop it first" >&2
      exit 1
    fi
    install -m 0755 build/nomad-driver-pixelstream "$DIR/plugins/nomad-driver-pixelstream"
    sed "s|@DIR@|$DIR|g" example/agent.hcl > "$DIR/agent.hcl"
    if [ -n "$DEMO_INTERFACE" ]; then
      sed -i "s|network_interface = \"lo\"|network_interface = \"$DEMO_INTERFACE\"|" "$DIR/agent.hcl"
    fi
    # The gateway job runs the host's binary (raw_exec).
    printf '\nplugin "raw_exec" {\n  config {\n    enabled = true\n  }\n}\n' >> "$DIR/agent.hcl"
    # The agent outlives this script: it must not keep descriptors the
    # script inherited (a caller's flock, say), nor its allocations' helpers.
    (
      for fd in /proc/self/fd/*; do
        n=${fd##*/}
        if [ "$n" -gt 2 ]; then eval "exec $n>&-" 2>/dev/null || true; fi
      done
      exec setsid "$NOMAD" agent -config "$DIR/agent.hcl"
    ) > "$DIR/agent.log" 2>&1 < /dev/null &
    echo $! > "$DIR/agent.pid"
    echo "Nomad agent starting (log: $DIR/agent.log)"
  fi
  wait_for 120 "the Nomad node with a healthy pixelstream driver" driver_healthy
  # One secret for the gateway and its sessions, and the operator token
  # (not the secret) for the gateway's operator endpoints, in Nomad
  # variables (the jobs read them through templates; they never appear on
  # a command line that stays around).
  local secret token
  secret=$("$NOMAD" var get -item=gateway_secret "nomad/jobs/$SESSION_JOB" 2>/dev/null || true)
  token=$("$NOMAD" var get -item=operator_token "nomad/jobs/$GATEWAY_JOB" 2>/dev/null || true)
  if [ -z "$secret" ] || [ -z "$token" ]; then
    [ -n "$secret" ] || secret=$(openssl rand -hex 32)
    token=$(openssl rand -hex 32)
    quiet "$NOMAD" var put -force "nomad/jobs/$SESSION_JOB" "gateway_secret=$secret"
    quiet "$NOMAD" var put -force "nomad/jobs/$GATEWAY_JOB" "gateway_secret=$secret" "operator_token=$token"
  fi
  (umask 077; printf 'PIXELSTREAM_OPERATOR_URL=http://127.0.0.1:%s\nPIXELSTREAM_OPERATOR_TOKEN=%s\n' "$OPERATOR_PORT" "$token" > "$OPERATOR_ENV")
  quiet "$NOMAD" job run -detach -var pool=true -var idle_timeout=1m -var "streamer=$ROOT/build/streamer" example/session.nomad.hcl
  quiet "$NOMAD" job run -detach -var "binary=$DIR/plugins/nomad-driver-pixelstream" -var "port=$GATEWAY_PORT" \
    -var "operator_port=$OPERATOR_PORT" -var nomad_addr="$NOMAD_ADDR" -var min_free=1 -var max_sessions=3 example/gateway.nomad.hcl
  wait_for 120 "the gateway to answer on 127.0.0.1:$GATEWAY_PORT" curl -sf "http://127.0.0.1:$GATEWAY_PORT/healthz"
  wait_for 180 "a warm session in the gateway's pool" warm_session
  echo "Gateway ready with a warm session; two browsers get two sessions (at most 3 at once, then a queue)."
  echo "nomad job status $SESSION_JOB lists the sessions; make demo-stop ends everything."
  echo "The gateway's sessions, as its operator sees them (URL and token in $OPERATOR_ENV):"
  echo "  set -a; . $OPERATOR_ENV; set +a"
  echo '  curl -H "Authorization: Bearer $PIXELSTREAM_OPERATOR_TOKEN" "$PIXELSTREAM_OPERATOR_URL/api/sessions"'
  echo
  local host=127.0.0.1
  if [ -n "$DEMO_INTERFACE" ]; then
    host=$(ip -4 -o addr show dev "$DEMO_INTERFACE" | awk '{print $4}' | cut -d/ -f1 | head -n1)
  fi
  echo "Open http://$host:$GATEWAY_PORT/"
}

# warm_session: the gateway's pool has a free session whose streamer is ready
# (read from its operator endpoint, with the operator token).
warm_session() {
  (
    set -a; . "$OPERATOR_ENV"; set +a
    curl -sf -H "Authorization: Bearer $PIXELSTREAM_OPERATOR_TOKEN" "$PIXELSTREAM_OPERATOR_URL/metrics" |
      grep -q '^pixelstream_gateway_sessions{state="free"} [1-9]'
  )
}

stop() {
  if agent_running; then
    "$NOMAD" job stop -purge -detach "$JOB" >/dev/null 2>&1 || true
    # The gateway first (it would dispatch replacements), then every session.
    "$NOMAD" job stop -purge "$GATEWAY_JOB" >/dev/null 2>&1 || true
    for child in $(curl -sf "$NOMAD_ADDR/v1/jobs?prefix=$SESSION_JOB/dispatch-" | grep -o '"ID":"[^"]*"' | cut -d'"' -f4); do
      "$NOMAD" job stop -purge "$child" >/dev/null 2>&1 || true
    done
    "$NOMAD" job stop -purge -detach "$SESSION_JOB" >/dev/null 2>&1 || true
    # Let the session end the way a user's `nomad job stop` ends it.
    wait_for 60 "the demo session to stop" bash -c "! pgrep -f '$DIR/plugins/[n]omad-driver-pixelstream session' >/dev/null" || true
    kill -INT "$(cat "$DIR/agent.pid")" 2>/dev/null || true
    wait_for 60 "the agent to exit" bash -c "! kill -0 $(cat "$DIR/agent.pid") 2>/dev/null" || kill -KILL "$(cat "$DIR/agent.pid")" 2>/dev/null || true
  fi
  # Anything of the demo still running (after a crash) goes too.
  pkill -KILL -f "$DIR/plugins/[n]omad-driver-pixelstream" 2>/dev/null || true
  rm -rf "$DIR"
  echo "demo stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
