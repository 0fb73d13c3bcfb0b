#!/usr/bin/env bash
# Installs what the tests need (Debian's Dovecot, and Cyrus unpacked into
# target/cyrus-root; both started by the tests themselves on 127.0.0.1) and
# runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! [ -x /usr/sbin/dovecot ] || ! [ -x /usr/bin/doveadm ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dovecot-core dovecot-imapd >/dev/null
fi
# Headless Chromium renders `ferryctl report` pages in the audit tests.
if ! [ -x /usr/bin/chromium ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
scripts/cyrus.sh

# The integration tests drive the real ferryd and ferryctl binaries, which
# `cargo test` does not build for packages without tests of their own.
cargo build --workspace --bins
cargo test --workspace --no-fail-fast
