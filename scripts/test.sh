#!/usr/bin/env bash
# Installs what the tests need (Debian's Dovecot, OpenSMTPD, BIND 9 and
# PostgreSQL, and Cyrus unpacked into target/cyrus-root; all started by the
# tests themselves on 127.0.0.1) and runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
updated=""

# need PROGRAM... -- PACKAGE...: installs the packages unless every program
# is there. Services the packages would start are held off during the
# install: the tests start their own servers on 127.0.0.1 (OpenSMTPD allows
# one per machine).
need() {
  local missing="" p
  while [ "$1" != "--" ]; do [ -x "$1" ] || missing=1; shift; done
  shift
  [ -n "$missing" ] || return 0
  [ -n "$updated" ] || { $sudo apt-get update -qq; updated=1; }
  local held=""
  if ! [ -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    held=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
  [ -z "$held" ] || $sudo rm -f /usr/sbin/policy-rc.d
}

need /usr/sbin/dovecot /usr/bin/doveadm -- dovecot-core dovecot-imapd
need /usr/sbin/smtpd -- opensmtpd
need /usr/sbin/named /usr/sbin/tsig-keygen -- bind9
need /usr/bin/chromium -- chromium
# PostgreSQL for the fleet's shared event store (run by the tests as user postgres).
need /usr/lib/postgresql/*/bin/postgres -- postgresql
need /usr/bin/openssl -- openssl
scripts/cyrus.sh
# Clients nobody here wrote keep the simulators honest: exchangelib the EWS
# one (tests/tests/it/ews.rs), Microsoft's Graph SDK the Graph one (tests/py).
python3 -c 'import ensurepip' 2>/dev/null || {
  [ -n "$updated" ] || { $sudo apt-get update -qq; updated=1; }
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
}
[ -x target/pyenv/bin/python ] || python3 -m venv target/pyenv
target/pyenv/bin/pip install -q exchangelib==5.6.0 msgraph-sdk==1.65.0 azure-identity==1.27.0

# The integration tests drive the real ferryd and ferryctl binaries, which
# `cargo test` does not build for packages without tests of their own.
cargo build --workspace --bins
cargo test --workspace --no-fail-fast
