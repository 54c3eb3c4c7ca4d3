#!/usr/bin/env bash
# The whole test suite. On a fresh machine it first installs the test bed (pinned Python
# tools in a venv under target/, Debian packages when missing); tests start and stop
# their own moto server on loopback.
#   scripts/test.sh                 # everything
#   scripts/test.sh --test cli      # extra arguments go to cargo test
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/testbed-setup.sh
cargo test --locked "$@"
