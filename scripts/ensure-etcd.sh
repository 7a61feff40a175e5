#!/bin/sh
# Installs the etcd server binary the integration tests spawn (/usr/bin/etcd, Debian's
# etcd-server 3.4). Idempotent: does nothing when the binary is already there.
# The tests run their own etcd processes on free loopback ports and never use the system
# service, so the package's service is disabled and stopped if the init system started it.
set -eu

if [ -x /usr/bin/etcd ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

$SUDO apt-get update
# policy-rc.d-less systems may start the service during postinst: tolerate that, then undo it.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends etcd-server

if command -v systemctl >/dev/null 2>&1; then
  $SUDO systemctl disable --now etcd >/dev/null 2>&1 || true
fi
if command -v service >/dev/null 2>&1; then
  $SUDO service etcd stop >/dev/null 2>&1 || true
fi

/usr/bin/etcd --version
