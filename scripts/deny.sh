#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (rules in deny.toml): licenses,
# banned and duplicate crates, sources, and RustSec advisories when the
# advisory database can be fetched. Installs cargo-deny if it is missing
# (`cargo install cargo-deny --locked`: a few minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deny >/dev/null; then
  cargo install cargo-deny --locked
fi

# cargo-deny fetches the advisory database itself (a git repository); where
# that host cannot be reached, say so and check the rest.
if cargo deny fetch db >/dev/null 2>&1; then
  cargo deny --locked check
else
  echo "cargo deny: advisory database unreachable; advisories NOT checked, checking licenses, bans and sources only"
  cargo deny --locked check licenses bans sources
fi
