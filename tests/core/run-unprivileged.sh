#!/bin/sh
# Runs a core test binary as an ordinary user: as nobody when started as
# root (CI), as the caller otherwise.
if [ "$(id -u)" -eq 0 ]; then
  exec setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=-all -- "$@"
fi
exec "$@"
