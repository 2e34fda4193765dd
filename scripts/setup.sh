#!/usr/bin/env bash
# Installs the Debian packages cuface needs to build and test, when they are missing.
# Idempotent and quiet when everything is present. Options:
#   --all   also the optional packages: OpenBLAS (side-by-side GEMM benchmark), PyTorch/torchvision,
#           numpy and scikit-learn (fixture generators in scripts/), dlib + its landmark model
#           (face detection in arbitrary photos), libjpeg-turbo-progs (scripts/make_jpeg_fixtures.sh),
#           Node.js with npm and npm's onnxruntime-node (the ONNX export test runs exported models in
#           onnxruntime), installed into build-tools/onnxruntime (ignored by git).
set -euo pipefail

required=(cmake g++ make pkg-config libstb-dev libgtest-dev libbenchmark-dev nlohmann-json3-dev
          libcli11-dev libopenmpi-dev openmpi-bin)
optional=(libopenblas-dev python3-torch python3-torchvision python3-numpy python3-sklearn
          libdlib-dev libdlib-data libjpeg-turbo-progs)

all=0
[[ "${1:-}" == "--all" ]] && all=1
wanted=("${required[@]}")
[[ $all -eq 1 ]] && wanted+=("${optional[@]}")

missing=()
for package in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
# Any Node.js with npm will do (NodeSource's nodejs carries its own npm and excludes Debian's).
[[ $all -eq 1 ]] && ! command -v npm >/dev/null && missing+=(nodejs npm)

if [[ ${#missing[@]} -gt 0 ]]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "setup: done"
fi

# onnxruntime's CPU build for Node.js, the version the export test was written against. Its install
# script would download GPU binaries from a host that may be unreachable: --ignore-scripts skips it
# (the CPU library is in the package itself).
onnxruntime="$(cd "$(dirname "$0")/.." && pwd)/build-tools/onnxruntime"
if [[ $all -eq 1 && ! -f "$onnxruntime/node_modules/onnxruntime-node/package.json" ]]; then
  echo "setup: installing onnxruntime-node into $onnxruntime"
  mkdir -p "$onnxruntime"
  npm install --prefix "$onnxruntime" --ignore-scripts --save-exact --no-audit --no-fund --loglevel=error \
    onnxruntime-node@1.31.1 >/dev/null
  echo "setup: done"
fi
