#!/usr/bin/env bash
# Everything CI checks, in the order that fails fastest: formatting, lints,
# then every test (unit, integration, doc, ui) with a throwaway PostgreSQL
# server so that no PostgreSQL test is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo clippy (the runtime with each optional feature set)"
for features in sqlite postgres http,sqlite https; do
    cargo clippy -p eventsourcing --no-default-features --features "$features" --locked -- -D warnings
done
echo "== cargo test (with PostgreSQL)"
scripts/with-postgres.sh cargo test --workspace --locked
