#!/usr/bin/env bash
# The man pages (man/) render without a warning from man or groff, and
# cannot drift from the programs: every config key of broker/daemon/config.cpp is
# described in xpra-broker.conf(5); every subcommand and option of
# `xpra-request-display --help` in xpra-request-display(1), and every exit
# code of client/exit_codes.h; every option of `xpra-brokerd --help` and
# its exit codes in xpra-brokerd(8); every option of pam/pam_options.c in
# pam_xpra_broker(8).
source "$(dirname "$0")/lib.sh"
command -v man >/dev/null || skip "man-db not installed"
make_scratch man-pages
MAN=$XPB_SOURCE_DIR/man
pages=(xpra-request-display.1 xpra-broker.conf.5 xpra-brokerd.8 pam_xpra_broker.8)
for page in "${pages[@]}"; do
  check "man page $page exists" test -f "$MAN/$page"
  expect_eq "man --warnings on $page" "" "$(MANWIDTH=80 man --warnings -l "$MAN/$page" 2>&1 >/dev/null)"
  if command -v groff >/dev/null; then
    expect_eq "groff -man -ww on $page" "" "$(groff -man -ww -z "$MAN/$page" 2>&1)"
  fi
  # Plain text as a reader sees it, one space between words.
  MANWIDTH=200 man -l "$MAN/$page" 2>/dev/null | col -b | tr -s ' ' >"$SCRATCH/$page.txt"
done
# A broken page must be reported, or the checks above prove nothing.
printf '.TH X 1\n.SH NAME\nx \\- y\n.BOGUS\n\\fZ\n' >"$SCRATCH/broken.1"
check "man --warnings reports a broken page (sanity check of this test)" \
  test -n "$(MANWIDTH=80 man --warnings -l "$SCRATCH/broken.1" 2>&1 >/dev/null)"

# xpra-broker.conf(5): each key as an entry "KEY = ..." of its own.
conf=$SCRATCH/xpra-broker.conf.5.txt
keys=$(grep -oE '\{\{"[a-z0-9-]+",' "$XPB_SOURCE_DIR/broker/daemon/config.cpp" | tr -d '{",')
check "broker/daemon/config.cpp has keys" test -n "$keys"
for key in $keys; do
  check "xpra-broker.conf(5) describes '$key'" grep -Eq "^ $key = " "$conf"
done
help_keys=$("$XPB_BROKERD" --help | awk '/^Every config key/ { on = 1; next } on && /^  [a-z]/ { print $1 } on && /^$/ { on = 0 }')
for key in $help_keys; do
  check "xpra-broker.conf(5) describes '$key' of xpra-brokerd --help" grep -Eq "^ $key = " "$conf"
done

# xpra-request-display(1): subcommands and options of --help.
client_page=$SCRATCH/xpra-request-display.1.txt
"$XPB_CLIENT" --help >"$SCRATCH/client-help"
commands=$(awk '/^Commands:/ { on = 1; next } /^Options:/ { on = 0 } on && /^  [a-z]/ { print $1 }' "$SCRATCH/client-help" | sort -u)
check "--help lists subcommands" test -n "$commands"
for c in $commands; do
  check "xpra-request-display(1) describes the command '$c'" grep -Eq "^ $c( |$)" "$client_page"
done
# Long options and single-letter ones (not the X server's own -nolisten).
options=$(grep -oE '(^|[ [,])(--[a-z][a-z-]*|-[a-zA-Z])([^a-zA-Z-]|$)' "$SCRATCH/client-help" |
  grep -oE -- '--?[a-zA-Z][a-z-]*' | sort -u)
for o in $options; do
  check "xpra-request-display(1) describes '$o'" grep -Eq -- "(^| |\[|,|\()$o([ =,.;)]|\]|$)" "$client_page"
done
# Every code of the other commands and every code of exec's own
# (kExecExit*); kExitXServerFailed is exec's alone, so only its 123 is one.
for code in $(sed -nE 's/^inline constexpr int kExit[A-Za-z]+ = ([0-9]+);.*/\1/p; s/^inline constexpr int kExecExit[A-Za-z]+ = ([0-9]+);.*/\1/p' \
  "$XPB_SOURCE_DIR/client/exit_codes.h" | grep -vx 73); do
  check "xpra-request-display(1) lists exit code $code" grep -Eq "^ ([0-9]+, )?$code( |,|$)" "$client_page"
done

# xpra-brokerd(8): options of --help and exit codes.
broker_page=$SCRATCH/xpra-brokerd.8.txt
for o in $("$XPB_BROKERD" --help | awk '/^Options:/ { on = 1; next } on && /^$/ { on = 0 } on' | grep -oE -- '--?[a-z][a-z-]*'); do
  check "xpra-brokerd(8) describes '$o'" grep -Eq -- "(^| |,)$o([ =,]|$)" "$broker_page"
done
for code in 0 $(sed -nE 's/^constexpr int kExit[A-Za-z]+ = ([0-9]+);.*/\1/p' "$XPB_SOURCE_DIR/broker/daemon/main.cpp"); do
  check "xpra-brokerd(8) lists exit code $code" grep -Eq "^ $code( |$)" "$broker_page"
done

# pam_xpra_broker(8): the module's options (the parser's own list).
known=$(sed -nE 's/^#define KNOWN_OPTIONS "([^"]+)".*/\1/p' "$XPB_SOURCE_DIR/pam/pam_options.c")
check "pam/pam_options.c lists its options" test -n "$known"
for o in $(tr ',' '\n' <<<"$known" | sed -E 's/^ *//; s/=.*//'); do
  check "pam_xpra_broker(8) describes '$o'" grep -Eq "^ $o(=| |$)" "$SCRATCH/pam_xpra_broker.8.txt"
done
finish
