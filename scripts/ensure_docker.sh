#!/usr/bin/env bash
# Make sure a Docker engine runs here with container networking off (sandboxes need no network).
# Installs Debian's docker.io and debootstrap when missing (needs root), then starts dockerd.
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "Docker is not running and ${need[*]} is missing: install it (as root: apt-get install ${need[*]}) or start your Docker engine." >&2
    exit 1
  fi
  echo "installing ${need[*]} from Debian's packages" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ "$(id -u)" != 0 ]; then
  echo "The Docker engine is not running: start it (e.g. sudo dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false &)." >&2
  exit 1
fi
echo "starting dockerd (no container networking)" >&2
setsid nohup dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
  >/var/log/sepo-dockerd.log 2>&1 < /dev/null &
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "dockerd did not start within 60 s; see /var/log/sepo-dockerd.log" >&2
exit 1
