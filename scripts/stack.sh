#!/usr/bin/env bash
# The local service stack on 127.0.0.1: Kafka (KRaft, single node), FerretDB (MongoDB wire
# protocol, SQLite backend; skipped when MONGODB_URL points at another MongoDB) and Redis.
#
#   scripts/stack.sh start|stop|restart|status [kafka|mongo|redis ...]
#   scripts/stack.sh start --fresh [...]      # a service that is down starts with empty data
#   scripts/stack.sh reset [kafka|mongo ...]  # stop and delete the service's data
#   scripts/stack.sh env                      # eval "$(scripts/stack.sh env)"
#   scripts/stack.sh topic-create NAME PARTITIONS
#
# start is idempotent: a service that already answers is left alone. State, data and logs live
# under $RTSCORE_STACK_DIR (default ~/.cache/rtscore/stack); logs in <stack>/logs/. Kafka keeps
# a topic's data for $RTSCORE_KAFKA_RETENTION_HOURS (default 2): this is a scratch stack, and
# data from earlier runs is what makes a cold start slow (tens of GB took Kafka over 90 s).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
LOGS="$STACK_DIR/logs"
mkdir -p "$LOGS" "$STACK_DIR/run"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pid_of() { local f="$STACK_DIR/run/$1.pid"; [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f"; }
wait_for() { # wait_for NAME SECONDS COMMAND...
  local name=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { log "$name did not become healthy within ${secs}s; last log lines:"; tail -n 20 "$LOGS/$name.log" >&2 || true; return 1; }
    sleep 0.5
  done
}
kafka_java() { java -Xmx512m -Dlog4j.configuration="file:$STACK_DIR/kafka/log4j.properties" -cp "$KAFKA_LIBS/*" "$@"; }
# The admin client retries for a minute against a closed port: only ask once the port is open.
kafka_healthy() { port_open "$KAFKA_PORT" && timeout 20 java -Xmx256m -Dlog4j.configuration="file:$STACK_DIR/kafka/log4j.properties" -cp "$KAFKA_LIBS/*" org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" --list; }
redis_healthy() { [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }
mongo_healthy() { port_open "$FERRETDB_PORT"; }

start_kafka() {
  [ -f "$KAFKA_LIBS/.complete" ] || die "Kafka jars missing: run scripts/setup.sh"
  local dir="$STACK_DIR/kafka"
  mkdir -p "$dir/data"
  cat > "$dir/log4j.properties" <<LOG4J
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
LOG4J
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=4
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=${RTSCORE_KAFKA_RETENTION_HOURS:-2}
log.segment.bytes=134217728
log.retention.check.interval.ms=60000
PROPS
  if [ ! -f "$dir/data/meta.properties" ]; then
    local uuid; uuid="$(kafka_java kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
    kafka_java kafka.tools.StorageTool format -t "$uuid" -c "$dir/server.properties" >> "$LOGS/kafka.log" 2>&1
  fi
  setsid nohup java -Xmx512m -Dlog4j.configuration="file:$dir/log4j.properties" -cp "$KAFKA_LIBS/*" kafka.Kafka "$dir/server.properties" >> "$LOGS/kafka.log" 2>&1 < /dev/null &
  echo $! > "$STACK_DIR/run/kafka.pid"
  wait_for kafka 180 kafka_healthy
}

start_mongo() {
  [ -x "$FERRETDB_BIN" ] || die "FerretDB missing: run scripts/setup.sh"
  local dir="$STACK_DIR/ferretdb"
  mkdir -p "$dir"
  setsid nohup "$FERRETDB_BIN" --handler=sqlite --sqlite-url="file:$dir/" --state-dir="$dir" \
    --listen-addr="127.0.0.1:$FERRETDB_PORT" --debug-addr=- --telemetry=disable --log-level=warn \
    >> "$LOGS/mongo.log" 2>&1 < /dev/null &
  echo $! > "$STACK_DIR/run/mongo.pid"
  wait_for mongo 30 mongo_healthy
}

start_redis() {
  command -v redis-server >/dev/null || die "redis-server missing: run scripts/setup.sh"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --pidfile "$STACK_DIR/run/redis.pid" --logfile "$LOGS/redis.log" --dir "$STACK_DIR" >/dev/null
  wait_for redis 15 redis_healthy
}

healthy() { case $1 in kafka) kafka_healthy ;; mongo) mongo_healthy ;; redis) redis_healthy ;; esac; }
port() { case $1 in kafka) echo "$KAFKA_PORT" ;; mongo) echo "$FERRETDB_PORT" ;; redis) echo "$REDIS_PORT" ;; esac; }

services() {
  local list=("$@")
  [ ${#list[@]} -gt 0 ] || list=(kafka mongo redis)
  for s in "${list[@]}"; do
    case $s in
      kafka|redis) echo "$s" ;;
      mongo) external_mongo || echo mongo ;;
      *) die "unknown service '$s' (kafka, mongo, redis)" ;;
    esac
  done
}

# The data directory of a service (redis keeps none: it runs without persistence).
data_dir() { case $1 in kafka) echo "$STACK_DIR/kafka/data" ;; mongo) echo "$STACK_DIR/ferretdb" ;; *) ;; esac; }

discard_data() {
  local dir; dir="$(data_dir "$1")"
  [ -n "$dir" ] && [ -d "$dir" ] || return 0
  log "$1: discarding data of earlier runs ($(du -sh "$dir" 2>/dev/null | cut -f1) in $dir)"
  rm -rf "$dir"
}

start() {
  local fresh=0
  if [ "${1:-}" = --fresh ]; then fresh=1; shift; fi
  for s in $(services "$@"); do
    if healthy "$s" >/dev/null 2>&1; then
      log "$s: already up on 127.0.0.1:$(port "$s")"
    elif port_open "$(port "$s")"; then
      die "$s: port $(port "$s") is taken by something that is not a healthy $s; stop it or set the port variable"
    else
      local t=$SECONDS
      [ $fresh = 1 ] && discard_data "$s"
      "start_$s"
      log "$s: started on 127.0.0.1:$(port "$s") in $((SECONDS - t))s (log: $LOGS/$s.log)"
    fi
  done
}

stop() {
  for s in $(services "$@"); do
    local pid; pid="$(pid_of "$s" || true)"
    if [ -z "$pid" ]; then log "$s: not running"; continue; fi
    kill "$pid" 2>/dev/null || true
    # A clean Kafka shutdown spares the next start a log recovery: give it time.
    for _ in $(seq 1 240); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$STACK_DIR/run/$s.pid"
    log "$s: stopped"
  done
}

status() {
  for s in $(services "$@"); do
    local state=down; healthy "$s" >/dev/null 2>&1 && state=up
    printf '%-6s %-5s 127.0.0.1:%-6s pid=%-8s log=%s\n' "$s" "$state" "$(port "$s")" "$(pid_of "$s" || echo -)" "$LOGS/$s.log"
  done
}

env_lines() {
  echo "export KAFKA_SERVERS=127.0.0.1:$KAFKA_PORT"
  echo "export MONGODB_URL=${MONGODB_URL:-mongodb://127.0.0.1:$FERRETDB_PORT}"
  echo "export REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
}

cmd="${1:-status}"; shift || true
case "$cmd" in
  start) start "$@"; env_lines | sed 's/^/  /' >&2 ;;
  stop) stop "$@" ;;
  restart) stop "$@"; start "$@" ;;
  reset)
    stop "$@"
    for s in $(services "$@"); do discard_data "$s"; done ;;
  status) status "$@" ;;
  env) env_lines ;;
  topic-create)
    [ $# -eq 2 ] || die "usage: stack.sh topic-create NAME PARTITIONS"
    kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" --create --if-not-exists --topic "$1" --partitions "$2" --replication-factor 1 >/dev/null
    log "topic $1: ready ($2 partitions)" ;;
  *) die "usage: stack.sh start [--fresh]|stop|restart|reset|status|env|topic-create" ;;
esac
