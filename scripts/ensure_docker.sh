#!/usr/bin/env bash
# Make sure a Docker engine runs here with container networking off (sandboxes need no network), and that
# debootstrap is there to build the sandbox image offline. Installs Debian's docker.io and debootstrap when
# missing (needs root), then starts dockerd.
set -euo pipefail
need=()
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
docker info >/dev/null 2>&1 || command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "Missing ${need[*]}: install it (as root: apt-get install ${need[*]})." >&2
    exit 1
  fi
  echo "installing ${need[*]} from Debian's packages" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if docker info >/dev/null 2>&1; then exit 0; fi
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
