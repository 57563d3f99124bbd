#!/usr/bin/env bash
# Throwaway single-node Ceph cluster with radosgw, used as a real S3 server in tests.
#
#   s3-server.sh start DIR PORT   create the cluster in DIR, serve S3 on 127.0.0.1:PORT,
#                                 print "S3_ENDPOINT=http://127.0.0.1:PORT" when ready
#   s3-server.sh stop DIR         kill the daemons (by their pid files) and remove DIR
#   s3-server.sh gateway-stop DIR        kill radosgw only: S3 is down, the objects stay
#   s3-server.sh gateway-start DIR PORT  start radosgw again and wait until it answers
#
# Layout: one monitor (v2 only, random free port), one OSD on memstore (objects live in RAM),
# no manager, no cephx, pools of size 1, radosgw with the beast frontend. All state, logs,
# sockets and pid files are under DIR; nothing touches /etc/ceph or /var/lib/ceph.
# The S3 user has the fixed credentials timestore-test / timestore-test-secret.
#
# This script never installs packages. Exit codes: 0 ok, 2 usage, 3 radosgw (ceph) missing,
# 1 anything else (with the tail of the daemon logs on stderr).
set -Eeuo pipefail

readonly ACCESS_KEY=timestore-test
readonly SECRET_KEY=timestore-test-secret
readonly MARKER=.timestore-s3-harness # marks a DIR this script created; stop only removes those
readonly READY_TIMEOUT_S=60

usage() {
  echo "usage: $0 start DIR PORT | stop DIR | gateway-stop DIR | gateway-start DIR PORT" >&2
  exit 2
}

log() { echo "s3-server: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# Print the last lines of every daemon log (used when something fails).
dump_logs() {
  local dir=$1 f
  for f in "$dir"/log/mkfs.out "$dir"/log/daemons.out "$dir"/log/{mon.a,osd.0,client.rgw}.log; do
    [[ -s $f ]] || continue
    echo "----- tail of $f -----" >&2
    tail -n 15 "$f" >&2
  done
}

# Report a failed start: show the logs, kill what was started, keep DIR for inspection
# ("stop DIR" removes it).
fail() {
  local dir=$1
  shift
  trap - ERR
  log "error: $*"
  dump_logs "$dir"
  kill_daemons "$dir"
  exit 1
}

port_in_use() {
  # A successful TCP connect means something listens there.
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() {
  local p i
  for i in $(seq 1 50); do
    p=$((20000 + RANDOM % 30000))
    if ! port_in_use "$p"; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

# True once radosgw answers an HTTP request (any status) on the port.
http_ready() {
  local port=$1 status
  if command -v curl >/dev/null 2>&1; then
    status=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$port/" 2>/dev/null) || return 1
    [[ $status != 000 ]]
  else
    timeout 2 bash -c '
      exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
      printf "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3
      IFS= read -r line <&3 && [[ $line == HTTP/* ]]' _ "$port" 2>/dev/null
  fi
}

# True if the process exists and is not a zombie (daemons are reparented to init, which may
# take a while to reap them; a zombie holds no memory or ports).
pid_alive() {
  [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null || return 1
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) } # field 3 (state) follows the parenthesised command name
  [[ ${stat:0:1} != Z ]]
}

# Kill every daemon that has a pid file under DIR/run. SIGKILL straight away: the cluster is
# throwaway, and on SIGTERM the OSD spends ~5 s reporting to the monitor and memstore writes
# all objects to disk. A pid is only killed if it still runs a Ceph binary (pids get reused).
kill_daemons() {
  local dir=$1 f pid pids=() i
  for f in "$dir"/run/*.pid; do
    [[ -f $f ]] || continue
    pid=$(tr -dc '0-9' <"$f")
    pid_alive "$pid" || continue
    [[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) =~ (ceph-mon|ceph-osd|radosgw) ]] || continue
    kill -KILL "$pid" 2>/dev/null || true
    pids+=("$pid")
  done
  for i in $(seq 1 50); do # wait up to 5 s for them to be gone
    local alive=0
    for pid in "${pids[@]}"; do pid_alive "$pid" && alive=1; done
    ((alive)) || return 0
    sleep 0.1
  done
  log "warning: daemons still alive after SIGKILL: ${pids[*]}"
}

cmd_stop() {
  local dir=$1
  [[ -d $dir ]] || return 0
  if [[ ! -e $dir/$MARKER ]]; then
    log "refusing to touch $dir: not created by this script (no $MARKER)"
    exit 1
  fi
  kill_daemons "$dir"
  rm -rf -- "$dir"
}

write_conf() {
  local dir=$1 port=$2 mon_port=$3 fsid=$4
  cat >"$dir/ceph.conf" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
public addr = 127.0.0.1
ms bind msgr1 = false
ms bind ipv6 = false

# No authentication anywhere. The monitor client must still use crc mode, otherwise
# radosgw waits 300 s ("get_initial_auth_request returned -13").
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc

# Single OSD: replicas of 1, few placement groups.
mon allow pool size one = true
mon warn on pool no redundancy = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0

# Everything lives under DIR.
run dir = $dir/run
pid file = $dir/run/\$name.pid
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
mon cluster log file = $dir/log/cluster.log
mon data = $dir/mon/\$id
osd data = $dir/osd/\$id
keyring = $dir/keyring
crash dir = $dir/crash
log to stderr = false
err to stderr = false

# Keep memory and thread counts modest.
ms async op threads = 1

[mon]
# Commit map changes at once instead of batching them for 1 s: radosgw creates its pools one
# command at a time on first start, and the default interval costs ~1 s per command.
paxos propose interval = 0.01
paxos min wait = 0.01
mon data avail warn = 1
mon data avail crit = 0

[osd]
osd objectstore = memstore
memstore device bytes = 2147483648
osd op num shards = 1
osd op num threads per shard = 2
osd max object size = 134217728

[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:$port
rgw data = $dir/rgw
rgw thread pool size = 16
rgw dynamic resharding = false
rgw enable usage log = false
rgw enable ops log = false
EOF
}

cmd_start() {
  local dir=$1 port=$2
  [[ $port =~ ^[0-9]+$ ]] || usage

  local bin
  for bin in radosgw radosgw-admin ceph-mon ceph-osd ceph monmaptool ceph-authtool; do
    if ! command -v "$bin" >/dev/null 2>&1; then
      log "'$bin' is not on PATH; install Ceph first:"
      log "  apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw ceph-common"
      exit 3
    fi
  done

  # A leftover from an earlier run of ours is cleaned up; anything else is refused.
  if [[ -e $dir ]]; then
    if [[ -e $dir/$MARKER ]]; then
      cmd_stop "$dir"
    elif [[ -n $(ls -A "$dir" 2>/dev/null) ]]; then
      log "refusing to use $dir: it exists and is not empty"
      exit 1
    fi
  fi
  if port_in_use "$port"; then
    log "port $port is already in use"
    exit 1
  fi

  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd) # absolute: the daemons chdir to /
  touch "$dir/$MARKER"
  mkdir -p "$dir"/{run,log,mon/a,osd/0,rgw,crash}

  # If anything below fails, leave DIR in place (stop cleans it) but show the logs.
  trap 'fail "$dir" "start failed at line $LINENO: $BASH_COMMAND"' ERR

  local mon_port fsid osd_uuid
  mon_port=$(free_port) || fail "$dir" "no free port for the monitor"
  fsid=$(cat /proc/sys/kernel/random/uuid)
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)
  write_conf "$dir" "$port" "$mon_port" "$fsid"
  export CEPH_CONF=$dir/ceph.conf
  # ceph-mon --mkfs wants a keyring even with auth disabled.
  ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >"$dir/log/mkfs.out" 2>&1

  # Monitor.
  monmaptool --create --clobber --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" \
    "$dir/monmap" >>"$dir/log/mkfs.out" 2>&1
  ceph-mon --mkfs -i a --monmap "$dir/monmap" >>"$dir/log/mkfs.out" 2>&1
  ceph-mon -i a >>"$dir/log/daemons.out" 2>&1 # daemonizes; pid file run/mon.a.pid

  # OSD: register it with the monitor, format the (in-memory) store, start it.
  local osd_id
  osd_id=$(timeout 30 ceph --connect-timeout 20 osd new "$osd_uuid" 2>>"$dir/log/mkfs.out") ||
    fail "$dir" "the monitor did not answer 'ceph osd new'"
  [[ $osd_id == 0 ]] || fail "$dir" "unexpected OSD id '$osd_id'"
  ceph-osd -i 0 --mkfs --osd-uuid "$osd_uuid" >>"$dir/log/mkfs.out" 2>&1
  ceph-osd -i 0 >>"$dir/log/daemons.out" 2>&1 # pid file run/osd.0.pid

  # radosgw creates its pools on start-up (needs the OSD up to finish).
  radosgw -n client.rgw >>"$dir/log/daemons.out" 2>&1 # pid file run/client.rgw.pid

  local deadline=$((SECONDS + READY_TIMEOUT_S))
  until http_ready "$port"; do
    ((SECONDS < deadline)) || fail "$dir" "radosgw did not answer on 127.0.0.1:$port within ${READY_TIMEOUT_S}s"
    local f
    for f in mon.a osd.0 client.rgw; do
      [[ -f $dir/run/$f.pid ]] && ! pid_alive "$(tr -dc '0-9' <"$dir/run/$f.pid")" &&
        fail "$dir" "$f exited"
    done
    sleep 0.25
  done

  timeout 30 radosgw-admin -n client.rgw user create --uid timestore-test --display-name "timestore tests" \
    --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" >>"$dir/log/mkfs.out" 2>&1 ||
    fail "$dir" "radosgw-admin user create failed"

  trap - ERR
  echo "S3_ENDPOINT=http://127.0.0.1:$port"
}

# An S3 outage for fault tests: the gateway goes away, the cluster (and every object) stays.
cmd_gateway_stop() {
  local dir=$1 pid
  [[ -f $dir/$MARKER ]] || die "$dir was not created by this script"
  pid=$(tr -dc '0-9' <"$dir/run/client.rgw.pid")
  kill -KILL "$pid" 2>/dev/null || true
  while pid_alive "$pid"; do sleep 0.1; done
  rm -f "$dir/run/client.rgw.pid"
}

cmd_gateway_start() {
  local dir=$1 port=$2
  [[ -f $dir/$MARKER ]] || die "$dir was not created by this script"
  export CEPH_CONF=$dir/ceph.conf
  radosgw -n client.rgw >>"$dir/log/daemons.out" 2>&1
  local deadline=$((SECONDS + READY_TIMEOUT_S))
  until http_ready "$port"; do
    ((SECONDS < deadline)) || die "radosgw did not answer on 127.0.0.1:$port within ${READY_TIMEOUT_S}s"
    sleep 0.25
  done
}

case "${1:-}" in
  start) [[ $# -eq 3 ]] || usage; cmd_start "$2" "$3" ;;
  stop) [[ $# -eq 2 ]] || usage; cmd_stop "$2" ;;
  gateway-stop) [[ $# -eq 2 ]] || usage; cmd_gateway_stop "$2" ;;
  gateway-start) [[ $# -eq 3 ]] || usage; cmd_gateway_start "$2" "$3" ;;
  *) usage ;;
esac
