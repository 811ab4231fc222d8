#!/usr/bin/env bash
# A walk through jitgate on one machine: a local sshd target and `jitgate serve` on
# loopback, then request → approve → ssh -J → revoke, printing every command it runs.
# Cleans up after itself. Needs OpenSSH (client and server) and python3 (for a free port).
set -euo pipefail
cd "$(dirname "$0")/.."

JITGATE=${JITGATE_BIN:-}
if [[ -z $JITGATE ]]; then
  cargo build --quiet
  JITGATE=$PWD/target/debug/jitgate
fi
SSHD=$(command -v sshd || echo /usr/sbin/sshd)
[[ -x $SSHD ]] || { echo "demo: sshd is missing (apt-get install openssh-server)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

login=$(id -un)
step "Keys for alice (engineer) and bob (approver)"
for who in alice bob; do ssh-keygen -q -t ed25519 -N '' -C "$who" -f "$work/$who"; done

step "A target: stock sshd trusting jitgate's target CA"
cat > "$work/jitgate.toml" <<TOML
[server]
data_dir = "data"
recordings_dir = "recordings"
api_listen = "127.0.0.1:0"
ssh_listen = "127.0.0.1:0"
hostname = "127.0.0.1"
[[roles]]
name = "engineer"
TOML
run "$JITGATE" init --config "$work/jitgate.toml" >/dev/null
mkdir -p "$work/sshd"
[[ $(id -u) -eq 0 ]] && mkdir -p /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$work/sshd/host_key"
target_port=$(free_port)
cat > "$work/sshd/sshd_config" <<CONF
Port $target_port
ListenAddress 127.0.0.1
HostKey $work/sshd/host_key
TrustedUserCAKeys $work/data/ca/target_ca.pub
AuthorizedKeysFile none
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin yes
UsePAM no
StrictModes no
PidFile $work/sshd/sshd.pid
CONF
echo "sshd_config: TrustedUserCAKeys $work/data/ca/target_ca.pub"
"$SSHD" -D -e -f "$work/sshd/sshd_config" 2>"$work/sshd/log" &
pids+=($!)

step "The policy: db1 needs one approval from an sre-lead (who also audits), 15 minutes at most"
cat >> "$work/jitgate.toml" <<TOML
[[roles.access]]
hosts = ["db1"]
logins = ["$login"]
max_ttl = "15m"
approvals = 1
approvers = ["sre-lead"]
[[roles]]
name = "sre-lead"
audit = true
[[hosts]]
name = "db1"
address = "127.0.0.1:$target_port"
host_key = "$(cat "$work/sshd/host_key.pub")"
[[users]]
name = "alice"
roles = ["engineer"]
keys = ["$(cat "$work/alice.pub")"]
[[users]]
name = "bob"
roles = ["sre-lead"]
keys = ["$(cat "$work/bob.pub")"]
TOML
run "$JITGATE" check-config --config "$work/jitgate.toml"

step "jitgate serve (API and bastion) on loopback"
"$JITGATE" serve --config "$work/jitgate.toml" >"$work/serve.out" 2>"$work/serve.log" &
pids+=($!)
for _ in $(seq 100); do grep -q '^jitgate serving' "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
line=$(grep '^jitgate serving' "$work/serve.out") || { cat "$work/serve.log" >&2; exit 1; }
echo "$line"
export JITGATE_URL=$(awk '{print $4}' <<<"$line")
export HOME=$work/home
mkdir -p "$HOME"

as() { local who=$1; shift; printf '[%s] $ jitgate %s\n' "$who" "$*"; JITGATE_IDENTITY=$work/$who "$JITGATE" "$@"; }

step "alice asks for access"
as alice request --host db1 --login "$login" --ttl 10m --reason "DEMO-1: look at the logs"
step "bob sees the queue and approves"
as bob requests --pending
as bob approve 1 --comment "go ahead"
step "alice fetches her certificate"
out=$(as alice login 1)
echo "$out"
ssh_cmd=$(grep -E '^\s+ssh ' <<<"$out" | sed 's/^ *//')

step "alice connects with stock OpenSSH through the bastion"
printf '$ %s %s\n' "$ssh_cmd" "'echo hello from \$(hostname); id -un'"
$ssh_cmd -o BatchMode=yes 'echo hello from $(hostname); id -un'

step "bob revokes; the certificate no longer opens anything"
as bob revoke 1 --reason "demo over"
printf '$ %s true\n' "$ssh_cmd"
if $ssh_cmd -o BatchMode=yes true 2>"$work/refused.txt"; then
  echo "demo: the connection should have been refused" >&2
  exit 1
fi
sed 's/^/  /' "$work/refused.txt"
echo "refused, as it should be"

step "what the auditors see"
as bob show 1
as bob sessions
session=$(JITGATE_IDENTITY=$work/bob "$JITGATE" --json sessions | grep -o '"id": *"[^"]*"' | head -1 | cut -d'"' -f4)
as bob replay "$session" --cat
run "$JITGATE" audit verify --config "$work/jitgate.toml"
echo
echo "demo finished; cleaning up"
