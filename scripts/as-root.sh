#!/usr/bin/env bash
# Runs a command as root: directly when we are root, through sudo otherwise.
if [ "$(id -u)" = 0 ]; then exec "$@"; fi
if command -v sudo >/dev/null; then exec sudo "$@"; fi
echo "$1: needs root to install packages (run as root or install sudo)" >&2
exit 1
