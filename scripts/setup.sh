#!/usr/bin/env bash
# Installs everything udfs needs on a Debian machine: Java, PostgreSQL 15 with PL/Python,
# a virtual environment with the package and its extras. Idempotent; a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${UDFS_VENV:-.venv}
PYTHON=${PYTHON:-python3}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@"
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# Java for Spark.
command -v java >/dev/null 2>&1 || apt_install openjdk-17-jre-headless

# PostgreSQL 15 server and PL/Python. PL/Python is pinned to the installed server's version,
# because an unpinned install would upgrade the server packages along with it.
installed postgresql-15 || apt_install postgresql-15
if ! installed postgresql-plpython3-15; then
  apt_install "postgresql-plpython3-15=$(dpkg-query -W -f='${Version}' postgresql-15)"
fi

# The virtual environment, reinstalled only when pyproject.toml or the compiled kernels'
# source change (the editable install builds udfs/plan/_kernels*.so from it).
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
stamp="$VENV/.udfs-installed"
want=$(cat pyproject.toml udfs/plan/_kernels.c | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  extras="spark,connect,postgres,dev,boost,explain"
  # The GPU backend's conversion is tested on the CPU with a CPU build of torch. Install it only
  # from a local wheel: from PyPI, plain torch is a multi-GB CUDA build.
  torch_wheel=$(ls ${PIP_FIND_LINKS:-/opt/wheels}/torch-*+cpu-*.whl 2>/dev/null | head -n 1 || true)
  if [ -n "$torch_wheel" ]; then
    "$VENV/bin/python" -m pip install -q "$torch_wheel"
    extras="$extras,gpu"
  else
    echo "udfs: no local CPU torch wheel; skipping the gpu extra (its tests will be skipped)"
  fi
  "$VENV/bin/python" -m pip install -q -e ".[$extras]"
  echo "$want" > "$stamp"
fi

# PL/Python runs as the postgres OS user and imports this venv's packages: it must be able
# to read them. Directories along the path need o+x.
chmod -R o+rX "$VENV" udfs 2>/dev/null || true
if [ "$(id -u)" -eq 0 ] && id postgres >/dev/null 2>&1 \
    && ! runuser -u postgres -- test -r "$PWD/udfs/__init__.py"; then
  echo "udfs: the postgres OS user cannot read $PWD: PL/Python could not import udfs." >&2
  echo "      Give the directories above it o+x (e.g. chmod o+x on each parent), or clone elsewhere." >&2
  exit 1
fi
echo "udfs: environment ready in $VENV"
