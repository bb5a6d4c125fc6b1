#!/usr/bin/env bash
# The bash completions (packaging/bash-completion/) in a real bash with
# Debian's bash-completion: subcommands, global and `exec` options, the
# command after `exec --`, `release` offering the caller's own lease ids and
# :N from a running broker (and nothing else's), and xpra-brokerd's options,
# config keys (taken from its --help) and their fixed values.
# Displays 498-499 (no X server is started).
source "$(dirname "$0")/lib.sh"
require_root
BASH_COMPLETION=/usr/share/bash-completion/bash_completion
[[ -r $BASH_COMPLETION ]] || skip "bash-completion is not installed"
make_scratch bash-completion
COMPLETIONS=$XPB_SOURCE_DIR/packaging/bash-completion
RUN=$SCRATCH/run
SOCK=$RUN/broker.sock
BROKER_LOG=$SCRATCH/broker.log
BIN=$SCRATCH/bin
mkdir -p "$BIN"
ln -s "$XPB_CLIENT" "$BIN/xpra-request-display"
ln -s "$XPB_BROKERD" "$BIN/xpra-brokerd"

# complete_as USER FUNCTION WORD...: what FUNCTION offers with the cursor at
# the end of the last WORD, one candidate per line, sorted, as USER.
complete_as() {
  local user=$1 fn=$2
  shift 2
  runuser -u "$user" -- env -i HOME=/ PATH="$BIN:/usr/bin:/bin" bash --norc --noprofile -c '
    source "$1"; source "$2"; source "$3"; fn=$4; shift 4
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
    COMPREPLY=()
    # compopt complains outside a real completion; its effect is not tested.
    "$fn" "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}" 2>/dev/null
    printf "%s\n" "${COMPREPLY[@]}" | sort' \
    _ "$BASH_COMPLETION" "$COMPLETIONS/xpra-request-display" "$COMPLETIONS/xpra-brokerd" "$fn" "$@"
}
offers() {  # offers DESCRIPTION EXPECTED-LINES FUNCTION WORD...
  local what=$1 want=$2
  shift 2
  expect_eq "$what" "$(sort <<<"$want")" "$(complete_as root "$@")"
}
R=_xpra_request_display
B=_xpra_brokerd

offers "subcommands" $'exec\nhelp\nlist\nmetrics\nrelease\nstatus' $R xpra-request-display ""
offers "subcommands after global options" "release" $R xpra-request-display --socket /x --timeout 2 re
offers "global options" $'--help\n--socket\n--timeout\n--version' $R xpra-request-display --
offers "exec options" $'--\n--attempts\n--end-with-parent\n--grace\n--purpose\n--xpra\n--xvfb\n--xvfb-command' $R xpra-request-display exec -
offers "exec options after one" $'--xpra\n--xvfb\n--xvfb-command' $R xpra-request-display exec --grace 2 --x
offers "a value is not completed as an option" "" $R xpra-request-display exec --purpose ""
offers "list options" $'--all\n--json\n--no-legend\n--output' $R xpra-request-display list --
offers "status options" $'--json\n--output\n-o' $R xpra-request-display status -
offers "an output format" $'json\ntext' $R xpra-request-display list -o ""
offers "help's commands" $'exec\nlist\nmetrics\nrelease\nstatus' $R xpra-request-display help ""
offers "release's option" "--user" $R xpra-request-display release --
offers "metrics options" "--output" $R xpra-request-display metrics -
mkdir -p "$SCRATCH/out" && touch "$SCRATCH/out/xpra_broker.prom"
offers "metrics --output completes a file" "$SCRATCH/out/xpra_broker.prom" $R xpra-request-display metrics --output "$SCRATCH/out/x"
check "after exec -- comes a command (from PATH)" grep -qx "xpra-brokerd" <(complete_as root $R xpra-request-display exec --xvfb -- xpra-b)
check "after exec -- CMD, CMD's own arguments" test -z "$(complete_as root $R xpra-request-display exec -- true --xv)"

offers "xpra-brokerd: a fixed value" $'debug' $B xpra-brokerd --log-level=de
offers "xpra-brokerd: a yes/no key (--KEY VALUE)" $'no' $B xpra-brokerd --journal n
keys=$(complete_as root $B xpra-brokerd --)
for want in --config= --check-config --help --version --displays= --runtime-dir= --log-level= --reap-grace-ms=; do
  check "xpra-brokerd offers $want" grep -qx -- "$want" <<<"$keys"
done
expect_eq "xpra-brokerd offers every config key of --help" \
  "$("$XPB_BROKERD" --help | awk '/^Every config key/ { on = 1; next } on && /^  [a-z]/ { n++ } on && /^$/ { on = 0 } END { print n }')" \
  "$(grep -c -- '=$' <<<"$keys" | awk '{ print $1 - 1 }')"  # minus --config=

# release: the caller's own leases, from the broker.
offers "release with the broker down: nothing" "" $R xpra-request-display --socket "$SOCK" release ""
start_broker "$BROKER_LOG" -- --user=xpra-broker --group=xpra \
  --runtime-dir="$RUN" --socket="$SOCK" --displays=498-499 --x11-tmp-dir="$SCRATCH/x11"
wait_for_socket "$SOCK" || { cat "$BROKER_LOG" >&2; fail "broker did not start"; finish; }
# runuser itself in the background (not a function's subshell), so that the
# kill below reaches the client through runuser, which passes SIGTERM on.
holders=()
for user in xpb-alice xpb-bob; do
  runuser -u "$user" -- "$XPB_CLIENT" --socket "$SOCK" exec -- sleep 60 >>"$SCRATCH/holders.log" 2>&1 &
  holders+=($!)
done
STARTED_PIDS+=("${holders[@]}")
for _ in $(seq 50); do
  [[ $(client root list --all 2>/dev/null | grep -c '^[0-9a-f]') == 2 ]] && break
  sleep 0.1
done
alice_lease=$(client xpb-alice list | awk 'NR == 2 { print $1 " " $2 }')
read -r alice_id alice_display <<<"$alice_lease"
check "alice holds a lease" test -n "$alice_id"
got=$(complete_as xpb-alice $R xpra-request-display --socket "$SOCK" release "")
expect_eq "release offers alice her lease id and display, not bob's" "$(printf '%s\n%s\n' "$alice_display" "$alice_id" | sort)" "$got"
expect_eq "release :<tab> offers the number without the colon-split prefix" "${alice_display#:}" \
  "$(complete_as xpb-alice $R xpra-request-display --socket="$SOCK" release ":")"
offers "release takes one argument" "" $R xpra-request-display --socket "$SOCK" release "$alice_id" ""
kill "${holders[@]}"
wait "${holders[@]}" 2>/dev/null || true
stop_broker
finish
