#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need, then runs the
# quality gates and every test. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ssh >/dev/null || need+=(openssh-client)
[[ -x /usr/sbin/sshd ]] || need+=(openssh-server)
command -v tmux >/dev/null || need+=(tmux)
command -v rsync >/dev/null || need+=(rsync)
command -v xauth >/dev/null || need+=(xauth)
command -v openssl >/dev/null || need+=(openssl)
command -v sqlite3 >/dev/null || need+=(sqlite3)
command -v vi >/dev/null || need+=(vim-tiny)
[[ -x /usr/bin/python3 ]] || need+=(python3)
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "scripts/test.sh: missing ${need[*]} and not root; install them with apt-get" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# sshd refuses to start without its privilege-separation directory.
mkdir -p /run/sshd 2>/dev/null || true

rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy

# The stock asciinema CLI 3.x plays our recordings in a test (3.x is a Rust crate; ~4 min to build once).
if ! { command -v asciinema >/dev/null && asciinema --version | grep -q '^asciinema 3\.'; }; then
  echo "installing asciinema 3.2.0 (cargo install)"
  cargo install asciinema --locked --version 3.2.0 --quiet
fi
export PATH=$HOME/.cargo/bin:$PATH

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test 2>&1
