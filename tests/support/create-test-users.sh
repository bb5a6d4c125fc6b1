#!/usr/bin/env bash
# Creates the real users and groups the multi-user tests run as (idempotent,
# safe to run from several tests at once). Needs root.
#   xpb-users   group allowed to take displays (the tests' allowed-groups)
#   xpb-alice   in xpb-users
#   xpb-bob     in xpb-users
#   xpb-mallory not in xpb-users: must be refused
#   xpb-carol, xpb-dave  in xpb-users; only jupyterhub.browser runs as them,
#               so it can count every process of its users while other
#               suites run as alice and bob
#   xpb-xver-a, xpb-xver-b  in xpb-users: the xpra-versions suite's own users
#               (it checks every process of its user, so no other suite's
#               session may run as them)
#   xpra-broker system user, group xpra: the broker's own identity
set -euo pipefail
exec 9>/run/xpra-broker-test-users.lock
flock 9
getent group xpra >/dev/null || groupadd --system xpra
getent group xpb-users >/dev/null || groupadd xpb-users
id xpra-broker >/dev/null 2>&1 || useradd --system --gid xpra --no-create-home --home-dir /nonexistent \
  --shell /usr/sbin/nologin xpra-broker
for u in xpb-alice xpb-bob xpb-mallory xpb-carol xpb-dave xpb-xver-a xpb-xver-b; do
  id "$u" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$u"
done
usermod -a -G xpb-users xpb-alice
usermod -a -G xpb-users xpb-bob
usermod -a -G xpb-users xpb-carol
usermod -a -G xpb-users xpb-dave
usermod -a -G xpb-users xpb-xver-a
usermod -a -G xpb-users xpb-xver-b
