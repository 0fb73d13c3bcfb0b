#!/usr/bin/env bash
# mailferry demo: a real migration, end to end, on generated Maildirs.
#
# Builds the release binaries, generates three users' mailboxes, starts
# ferryd on a temporary data directory, and drives it with ferryctl exactly
# as an administrator would: endpoints, a batch from a CSV, a verify pass, a
# full pass with live progress, new mail, a delta pass, delta passes by
# cron, one user's cutover, the batch's completion, the audit export.
# FERRY_DEMO_MESSAGES sets the messages per user (default 400).
set -euo pipefail
cd "$(dirname "$0")"

echo "== building (release)"
cargo build --release -q -p ferryd -p ferry-ctl -p ferry-tests --bins
bin="$PWD/target/release"
work=$(mktemp -d "${TMPDIR:-/tmp}/mailferry-demo.XXXXXX")
sock="$work/ferryd.sock"
ctl() { "$bin/ferryctl" --socket "$sock" "$@"; }
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" || true; fi
  if [ -z "${FERRY_DEMO_KEEP:-}" ]; then rm -rf "$work"; else echo "kept $work"; fi
}
trap cleanup EXIT

users="anna@old.example,bert@old.example,carla@old.example"
n="${FERRY_DEMO_MESSAGES:-400}"
echo "== generating $n messages for each of $users"
"$bin/ferry-sample" maildir "$work/old" --users "$users" --messages "$n"
mkdir -p "$work/new"

echo "== starting ferryd (log in $work/ferryd.log)"
# Maildir folders given over the socket must lie under a root the config names.
printf '[endpoints]\npath_roots = ["%s"]\n' "$work" >"$work/ferryd.toml"
"$bin/ferryd" --data-dir "$work/data" --socket "$sock" --config "$work/ferryd.toml" 2>"$work/ferryd.log" &
pid=$!
for _ in $(seq 100); do ctl status >/dev/null 2>&1 && break; sleep 0.1; done
ctl status

echo "== endpoints and batch"
ctl endpoint add old --kind maildir --host "$work/old"
ctl endpoint add new --kind maildir --host "$work/new"
ctl endpoint verify old
{
  echo "SourceEmail,DestinationEmail"
  for u in ${users//,/ }; do echo "$u,${u%@*}@new.example"; done
} >"$work/wave1.csv"
ctl batch create wave1 --source old --destination new --csv "$work/wave1.csv"

echo "== verify pass (counts both sides, copies nothing)"
ctl batch start wave1 --pass verify
ctl batch wait wave1 >/dev/null

echo "== full pass"
ctl batch start wave1 --pass full
ctl watch wave1
ctl batch wait wave1 >/dev/null
ctl batch show wave1
ctl mailbox show anna@old.example

echo "== new mail arrives for anna; delta pass"
"$bin/ferry-sample" maildir "$work/old" --users anna@old.example --messages 25 --seed 42
ctl batch start wave1 --pass delta
ctl watch wave1
ctl batch wait wave1 >/dev/null
ctl mailbox show anna@old.example

echo "== delta passes by cron (every 5 s here; overnight in real life)"
ctl batch schedule wave1 --delta '*/5 * * * * *' --tz Europe/Paris
"$bin/ferry-sample" maildir "$work/old" --users bert@old.example --messages 10 --seed 43
for _ in $(seq 150); do
  ctl events --json | grep -q '"event_type":"ScheduleFired"' && break
  sleep 0.1
done
ctl batch schedule wave1 --delta off
ctl batch wait wave1 >/dev/null
ctl batch show wave1

echo "== cutover of anna: a final delta pass, then her routing runbooks"
ctl cutover anna@old.example
for _ in $(seq 300); do
  ctl --json mailbox show anna@old.example | grep -q '"state": "CutOver"' && break
  sleep 0.1
done
ctl mailbox show anna@old.example | head -3
ls "$work/data/runbooks/wave1"

echo "== completing the batch: a last delta pass, then Completed"
ctl batch complete wave1
ctl batch wait wave1 >/dev/null
ctl batch show wave1 | head -3

echo "== the event log"
total=$(ctl events --json | wc -l)
echo "$total events recorded; by type:"
ctl events --json | sed -E 's/.*"event_type":"([A-Za-z]+)".*/\1/' | sort | uniq -c | sort -rn
ctl audit export -o "$work/audit.jsonl"
ctl audit verify "$work/audit.jsonl"

echo "== stopping ferryd (SIGTERM drains)"
kill -TERM "$pid"; wait "$pid"; pid=""
echo "done: $(find "$work/new" -type f -path '*/cur/*' | wc -l) messages at the destination"
