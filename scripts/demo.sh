#!/usr/bin/env bash
# `make demo` / `make demo-stop`: a Nomad agent on loopback with the plugin,
# running example/demo.nomad.hcl. `start` returns once the stream is ready and
# prints the URL to open; running it again reuses the agent and the job.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIR=$ROOT/build/demo
NOMAD=$ROOT/build/nomad
export NOMAD_ADDR=http://127.0.0.1:4646
JOB=pixelstream-demo

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

driver_healthy() {
  [ "$("$NOMAD" node status -self -t '{{ (index .Drivers "pixelstream").Healthy }}' 2>/dev/null)" = true ]
}

alloc_id() {
  local id
  id=$("$NOMAD" job allocs -t '{{ range . }}{{ if eq .ClientStatus "running" }}{{ .ID }}{{ "\n" }}{{ end }}{{ end }}' "$JOB" 2>/dev/null | head -1)
  [ -n "$id" ] && echo "$id"
}

player_port() {
  "$NOMAD" alloc status -t '{{ range .AllocatedResources.Shared.Ports }}{{ if eq .Label "http" }}{{ .Value }}{{ end }}{{ end }}' "$1"
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
    setsid "$NOMAD" agent -config "$DIR/agent.hcl" > "$DIR/agent.log" 2>&1 < /dev/null &
    echo $! > "$DIR/agent.pid"
    echo "Nomad agent starting (log: $DIR/agent.log)"
  fi
  wait_for 120 "the Nomad node with a healthy pixelstream driver" driver_healthy
  "$NOMAD" job run -detach -var "streamer=$ROOT/build/streamer" example/demo.nomad.hcl >/dev/null
  wait_for 120 "the demo allocation to run" alloc_id
  local alloc port
  alloc=$(alloc_id)
  port=$(player_port "$alloc")
  wait_for 120 "the stream to be ready (streamer identified)" curl -sf "http://127.0.0.1:$port/readyz"
  echo "Stream ready: allocation ${alloc:0:8}; nomad alloc logs -f ${alloc:0:8} shows the app, make demo-stop ends it."
  echo
  echo "Open http://127.0.0.1:$port/"
}

stop() {
  if agent_running; then
    "$NOMAD" job stop -purge -detach "$JOB" >/dev/null 2>&1 || true
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
