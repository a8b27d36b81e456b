#!/usr/bin/env bash
# Install Debian's chromium for the end-to-end browser test (playwright drives it; it never downloads
# a browser). Needs root or passwordless sudo; otherwise says so and leaves the e2e test to skip.
set -u
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
  echo "install-browser: not root; install chromium yourself (apt-get install chromium) for the e2e test" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq chromium >/dev/null \
  || echo "install-browser: apt-get install chromium failed; the e2e test will skip (or fail in CI)" >&2
