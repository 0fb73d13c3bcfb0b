#!/usr/bin/env bash
# Installs what the tests need (Debian's Dovecot and OpenSMTPD, and Cyrus unpacked into
# target/cyrus-root; all started by the tests themselves on 127.0.0.1) and
# runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! [ -x /usr/sbin/dovecot ] || ! [ -x /usr/bin/doveadm ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dovecot-core dovecot-imapd >/dev/null
fi
if ! [ -x /usr/sbin/smtpd ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # The package would start a system smtpd; the tests run their own (one
  # per machine), so services are held off during the install.
  held=""
  if ! [ -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    held=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq opensmtpd >/dev/null
  [ -z "$held" ] || $sudo rm -f /usr/sbin/policy-rc.d
fi
scripts/cyrus.sh

# The integration tests drive the real ferryd and ferryctl binaries, which
# `cargo test` does not build for packages without tests of their own.
cargo build --workspace --bins
cargo test --workspace --no-fail-fast
