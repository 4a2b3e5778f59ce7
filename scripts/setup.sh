#!/usr/bin/env bash
# Installs the system packages streampool needs (Debian / Ubuntu), only those missing.
set -euo pipefail
packages=(cmake ninja-build g++ pkg-config libgtest-dev libbenchmark-dev nlohmann-json3-dev libcli11-dev libopenblas-dev libdnnl-dev
          python3-dev pybind11-dev libdlpack-dev python3-numpy python3-pytest libboost-dev
          libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc)
# Installed where the distribution has them: PyTorch for the Python tests that compare with it
# (Debian 12's python3-torch; absent for newer Pythons, where those tests skip).
optional=(python3-torch)
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=()
for p in "${packages[@]}"; do
  installed "$p" || missing+=("$p")
done
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
updated=0
if ((${#missing[@]})); then
  echo "streampool setup: installing ${missing[*]}"
  $sudo apt-get update -qq && updated=1
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
for p in "${optional[@]}"; do
  installed "$p" && continue
  ((updated)) || { $sudo apt-get update -qq && updated=1; }
  if apt-cache show "$p" >/dev/null 2>&1; then
    echo "streampool setup: installing $p (optional)"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$p" ||
      echo "streampool setup: $p could not be installed: the tests that need it skip"
  fi
done
if [ -x /usr/local/cuda/bin/nvcc ] || command -v nvcc >/dev/null 2>&1; then
  echo "streampool setup: CUDA toolkit found: the CUDA backend is built"
else
  echo "streampool setup: no CUDA toolkit: CPU-only build"
fi
