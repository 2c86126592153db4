#!/usr/bin/env bash
# Run the hilserl test suite (after scripts/setup.sh). Extra arguments go to pytest,
# e.g. `scripts/test.sh tests/core -k frames`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
set +u
# shellcheck disable=SC1091
source scripts/env.sh
set -u
# ROS tests talk over loopback only; each pytest process picks its own domain (tests/conftest.py).
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
exec python -m pytest "$@"
