#!/usr/bin/env bash
# Brings up the Kafka broker that orderflow needs and prints its bootstrap
# address (host:port) on stdout.
#
# If KAFKA_BROKERS is set and a broker answers there, it is used as it is.
# Otherwise this starts a single-node Apache Kafka that belongs to this
# checkout: KRaft mode, broker and controller in one JVM, listening on
# 127.0.0.1:${ORDERFLOW_KAFKA_PORT:-59092} (clients) and
# 127.0.0.1:${ORDERFLOW_KAFKA_CONTROLLER_PORT:-59093} (controller) only. Its
# jars come from the Maven project kafka/pom.xml, copied once into
# .dev/kafka/libs; its configuration, log (server.log), pid file and data live
# in .dev/kafka (git-ignored). Running it again reuses what is there: a broker
# that is up is left alone (restarted if its configuration changed), a stale
# pid file is replaced, the data survives. `kafka.sh stop` stops the project's
# broker (SIGTERM, then waits up to 30s).
#
# Needs Java 17 or newer and Maven; installs Debian's when they are absent.
# ORDERFLOW_KAFKA_HEAP overrides the heap flags (default -Xms256m -Xmx1g).
# ORDERFLOW_KAFKA_DIR puts a broker's configuration and data elsewhere, so tests
# can run a private broker (with its own ports) that they stop and restart.
#
# Kafka's command-line tools run from the same jars, for example:
#   java -cp '.dev/kafka/libs/*' org.apache.kafka.tools.TopicCommand \
#     --bootstrap-server 127.0.0.1:59092 --list
# (also org.apache.kafka.tools.ConsoleProducer,
# org.apache.kafka.tools.consumer.ConsoleConsumer,
# org.apache.kafka.tools.consumer.group.ConsumerGroupCommand).
set -euo pipefail

log() { printf 'kafka.sh: %s\n' "$*" >&2; }

root=$(cd "$(dirname "$0")/.." && pwd)
port=${ORDERFLOW_KAFKA_PORT:-59092}
cport=${ORDERFLOW_KAFKA_CONTROLLER_PORT:-59093}
heap=${ORDERFLOW_KAFKA_HEAP:--Xms256m -Xmx1g}
dir=${ORDERFLOW_KAFKA_DIR:-"$root/.dev/kafka"}
libs="$root/.dev/kafka/libs" # shared by every broker of this checkout
data="$dir/data"
pom="$root/kafka/pom.xml"
pidfile="$dir/broker.pid"
addr="127.0.0.1:$port"
ready_timeout=90
stop_timeout=30

# tcp_open HOST:PORT: whether something accepts TCP connections there.
tcp_open() {
  local hp=$1 host port
  host=${hp%:*} port=${hp##*:}
  host=${host#[} host=${host%]}
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null
}

pom_sum() { sha256sum <"$pom" | cut -d' ' -f1; }
libs_ready() { [ -f "$libs/.stamp" ] && [ "$(cat "$libs/.stamp")" = "$(pom_sum)" ]; }

write_tools_config() {
  mkdir -p "$dir"
  cat >"$dir/tools-log4j2.properties" <<'CONF'
# Written by scripts/kafka.sh for the command-line tools: warnings to stderr.
status = error
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.err.ref = STDERR
CONF
  # Bounds each admin request, so that a broker that does not answer fails
  # the check instead of being retried for the client's default minute.
  cat >"$dir/client.properties" <<'CONF'
request.timeout.ms=5000
default.api.timeout.ms=10000
CONF
}

# kafka_tool CLASS ARGS...: runs one of Kafka's command-line tools from the
# copied jars, in a small client JVM that logs warnings to stderr.
tool_java=(java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.awt.headless=true
  -Dlog4j2.configurationFile="$dir/tools-log4j2.properties" -cp "$libs/*")
kafka_tool() { "${tool_java[@]}" "$@"; }

# api_ok BOOTSTRAP: whether a broker there answers a Kafka API request
# (listing the topics: metadata from a broker that has joined the cluster).
api_ok() {
  write_tools_config
  timeout 30 "${tool_java[@]}" org.apache.kafka.tools.TopicCommand --bootstrap-server "$1" \
    --command-config "$dir/client.properties" --list >/dev/null 2>&1
}

# broker_pid: the pid of this checkout's broker when it runs, from the pid
# file, or else by the server.properties path on its command line.
broker_pid() {
  local pid f
  if [ -f "$pidfile" ]; then
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [ -n "$pid" ] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF "kafka.Kafka $dir/server.properties"; then
      echo "$pid"
      return 0
    fi
  fi
  for f in /proc/[0-9]*/cmdline; do
    if tr '\0' ' ' 2>/dev/null <"$f" | grep -qF "kafka.Kafka $dir/server.properties"; then
      pid=${f#/proc/} pid=${pid%/cmdline}
      echo "$pid" >"$pidfile"
      echo "$pid"
      return 0
    fi
  done
  return 1
}

# stop_broker PID: SIGTERM (a controlled shutdown), then SIGKILL if it has
# not exited after stop_timeout seconds.
stop_broker() {
  local pid=$1
  log "stopping the broker (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq $((stop_timeout * 10))); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "the broker did not stop within ${stop_timeout}s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$pidfile"
}

server_properties() {
  cat <<CONF
# Written by scripts/kafka.sh on every start: edits here are overwritten.
# A single-node KRaft cluster: this process is broker and controller, with a
# static quorum of one voter.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$data

# Topics are created by the application, with the partitions it asks for.
auto.create.topics.enable=false
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
log.segment.bytes=16777216

# One node: the internal topics have one replica, and fewer partitions than
# the defaults (50) since there is no load to spread.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=3
group.initial.rebalance.delay.ms=0
CONF
}

log4j2_properties() {
  cat <<CONF
# Written by scripts/kafka.sh: the broker logs to server.log, nothing to stdout.
status = warn
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = $dir/server.log
appender.file.filePattern = $dir/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = info
rootLogger.appenderRef.file.ref = FILE
# Per-request and state-change chatter.
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.statechange.name = state.change.logger
logger.statechange.level = warn
CONF
}

# wait_ready: until the broker answers a Kafka API request on $addr, first
# waiting (cheaply) for the port, then asking for the topic list. Gives up
# with the end of the log when the broker exits or ready_timeout passes (and
# then stops it).
wait_ready() {
  local deadline=$((SECONDS + ready_timeout)) pid=
  while :; do
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      ready_failed "the broker exited during startup"
    fi
    if [ $SECONDS -ge $deadline ]; then
      # Stopped, so that the next run does not take it for a working one.
      [ -n "$pid" ] && stop_broker "$pid"
      ready_failed "the broker did not come up within ${ready_timeout}s"
    fi
    if tcp_open "$addr" && api_ok "$addr"; then
      log "Kafka is up on $addr (pid $pid)"
      return 0
    fi
    sleep 0.5
  done
}
ready_failed() {
  log "$1; the end of $dir/server.log:"
  tail -n 40 "$dir/server.log" >&2 2>/dev/null || true
  if [ -s "$dir/stdout.log" ]; then
    log "and of $dir/stdout.log:"
    tail -n 20 "$dir/stdout.log" >&2
  fi
  exit 1
}

if [ "${1:-}" = stop ]; then
  [ -d "$dir" ] || exit 0
  exec 9>"$dir/.lock"
  flock 9
  if pid=$(broker_pid); then
    stop_broker "$pid"
  fi
  rm -f "$pidfile"
  exit 0
fi
[ $# -eq 0 ] || { log "usage: kafka.sh [stop]"; exit 2; }

if [ -n "${KAFKA_BROKERS:-}" ]; then
  # Something must accept TCP connections there; then, when the Kafka client
  # jars are at hand, it must also answer a Kafka API request.
  IFS=, read -ra hps <<<"$KAFKA_BROKERS"
  for hp in "${hps[@]}"; do
    if tcp_open "$hp"; then
      if ! { libs_ready && command -v java >/dev/null; } || api_ok "$KAFKA_BROKERS"; then
        log "using KAFKA_BROKERS from the environment"
        printf '%s\n' "$KAFKA_BROKERS"
        exit 0
      fi
      break
    fi
  done
  log "KAFKA_BROKERS is set but no broker answers there; starting a local broker instead"
fi

mkdir -p "$dir"
# One run at a time per checkout (make run and make test may race).
exec 9>"$dir/.lock"
flock 9

want_server=$(server_properties)
want_log4j=$(log4j2_properties)

if pid=$(broker_pid); then
  if [ "$want_server" = "$(cat "$dir/server.properties" 2>/dev/null)" ] &&
    [ "$want_log4j" = "$(cat "$dir/log4j2.properties" 2>/dev/null)" ]; then
    # Already up: the pid is this checkout's broker and the port answers.
    if tcp_open "$addr"; then
      printf '%s\n' "$addr"
      exit 0
    fi
    log "the broker (pid $pid) runs but does not answer on $addr yet; waiting for it"
    wait_ready
    printf '%s\n' "$addr"
    exit 0
  fi
  log "the broker's configuration has changed; restarting it"
  stop_broker "$pid"
fi

java_major() { java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p' | cut -d. -f1; }
if ! command -v java >/dev/null || [ "$(java_major)" -lt 17 ] || ! command -v mvn >/dev/null; then
  log "installing Java 17 and Maven from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  # Debian 12 has Java 17; later releases only newer ones, as their default.
  apt-get install -y -qq openjdk-17-jre-headless maven >&2 ||
    apt-get install -y -qq default-jre-headless maven >&2
  if [ "$(java_major)" -lt 17 ]; then
    log "java on PATH is older than 17; Kafka 4 needs 17 or newer"
    exit 1
  fi
fi

# The jars: copied from the local Maven repository, which Maven fills from the
# registry on first use. The stamp holds the pom's checksum, so an unchanged
# pom costs nothing and a changed one copies afresh.
if ! libs_ready; then
  mvn_copy() {
    rm -rf "$libs"
    # Debian's Maven 3.8 prints colour codes even in batch mode: dropped.
    mvn -q -B -f "$pom" "$@" \
      org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$libs" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2
  }
  # Offline first: when the local repository already has every jar, this
  # asks the network nothing.
  if ! mvn_copy -o >/dev/null 2>&1; then
    log "fetching Kafka's jars with Maven (first run only)"
    mvn_copy
  fi
  pom_sum >"$libs/.stamp"
fi

write_tools_config
# Written on every start, so that a changed port takes effect.
printf '%s\n' "$want_server" >"$dir/server.properties"
printf '%s\n' "$want_log4j" >"$dir/log4j2.properties"

if [ ! -f "$data/meta.properties" ]; then
  log "formatting the log directory $data"
  cluster_id=$(kafka_tool kafka.tools.StorageTool random-uuid)
  if ! kafka_tool kafka.tools.StorageTool format --ignore-formatted \
    -t "$cluster_id" -c "$dir/server.properties" >"$dir/format.log" 2>&1; then
    log "formatting failed:"
    cat "$dir/format.log" >&2
    exit 1
  fi
fi

if tcp_open "$addr" || tcp_open "127.0.0.1:$cport"; then
  log "port $port or $cport on 127.0.0.1 is taken by another process;" \
    "set ORDERFLOW_KAFKA_PORT and ORDERFLOW_KAFKA_CONTROLLER_PORT to free ones"
  exit 1
fi

log "starting Kafka on $addr"
rm -f "$pidfile"
# Its own session, so that it outlives the calling shell; fd 9 (the lock) is
# closed so that the broker does not hold it.
# shellcheck disable=SC2016,SC2086 # $$ is the inner bash's; $heap is a list of flags
setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pidfile" \
  java $heap -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
  -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
  -Dlog4j2.configurationFile="$dir/log4j2.properties" -Dkafka.logs.dir="$dir" \
  -cp "$libs/*" kafka.Kafka "$dir/server.properties" \
  </dev/null >"$dir/stdout.log" 2>&1 9>&- &

wait_ready
printf '%s\n' "$addr"
