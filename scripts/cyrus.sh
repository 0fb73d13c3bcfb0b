#!/usr/bin/env bash
# Unpacks Debian's Cyrus IMAP into target/cyrus-root for the tests
# (ferry-testservers' Cyrus harness runs it from there on 127.0.0.1).
#
# cyrus-imapd conflicts with dovecot-imapd, so it is never installed: its
# packages (and sasl2-bin, for saslpasswd2 without the saslauthd service)
# are fetched with `apt-get download` and unpacked with `dpkg-deb -x`. The
# shared libraries they link against conflict with nothing and are
# installed normally, without upgrading what is already there.
# Does nothing when the tree is there and its binaries find their libraries.
set -euo pipefail
cd "$(dirname "$0")/.."

root="$PWD/target/cyrus-root"
bins=("$root/usr/lib/cyrus/bin/master" "$root/usr/lib/cyrus/bin/imapd" "$root/usr/sbin/saslpasswd2")
libs=(libical3 libpcre3 libxapian30 libicu72 libjansson4 libpq5 libsqlite3-0 libwrap0
  libxml2 libldap-2.5-0 libkrb5-3 libcom-err2 libssl3 libdb5.3 libsasl2-2 libsasl2-modules)

ready() {
  for b in "${bins[@]}"; do
    [ -x "$b" ] || return 1
    if LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu" ldd "$b" | grep -q "not found"; then
      return 1
    fi
  done
}

ready && exit 0

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-upgrade "${libs[@]}" >/dev/null

debs="$(mktemp -d)"
trap 'rm -rf "$debs"' EXIT
# apt's sandbox user must be able to write the downloads.
chmod 777 "$debs"
(cd "$debs" && apt-get download -qq cyrus-common cyrus-imapd sasl2-bin)
rm -rf "$root.new"
mkdir -p "$root.new"
for deb in "$debs"/*.deb; do
  dpkg-deb -x "$deb" "$root.new"
done
# Renamed into place last, so a half-unpacked tree never looks ready.
rm -rf "$root"
mv "$root.new" "$root"

if ! ready; then
  echo "cyrus.sh: Cyrus binaries in $root still miss libraries:" >&2
  for b in "${bins[@]}"; do
    LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu" ldd "$b" | grep "not found" >&2 || true
  done
  exit 1
fi
