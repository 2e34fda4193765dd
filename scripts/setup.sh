#!/usr/bin/env bash
# Installs what cuface needs to build and test, when it is missing. Idempotent and quiet when
# everything is present.
#   (default) the Debian packages to build and test, and, best effort, the tools some tests run
#           against (they skip with a message where absent): Chromium (renders `cuface report`'s page
#           headless) and npm's onnxruntime-node CPU build in build-tools/onnxruntime (ignored by
#           git; the ONNX export test runs exported models in it).
#   --all   also the optional packages: OpenBLAS (side-by-side GEMM benchmark), PyTorch/torchvision,
#           numpy and scikit-learn (fixture generators in scripts/), dlib + its landmark model
#           (face detection in arbitrary photos), libjpeg-turbo-progs (scripts/make_jpeg_fixtures.sh).
set -euo pipefail

required=(cmake g++ make pkg-config libstb-dev libgtest-dev libbenchmark-dev nlohmann-json3-dev
          libcli11-dev libopenmpi-dev openmpi-bin)
test_tools=(chromium)
optional=(libopenblas-dev python3-torch python3-torchvision python3-numpy python3-sklearn
          libdlib-dev libdlib-data libjpeg-turbo-progs)

sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"
updated=0
missing_of() {  # prints the packages of "$@" that are not installed
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || echo "$package"
  done
}
install() {  # install PACKAGE...: apt-get update once, then install quietly
  echo "setup: installing $*"
  if ((updated == 0)); then
    $sudo apt-get update -qq
    updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

wanted=("${required[@]}")
[[ "${1:-}" == "--all" ]] && wanted+=("${optional[@]}")
mapfile -t missing < <(missing_of "${wanted[@]}")
((${#missing[@]} == 0)) || install "${missing[@]}"

# The test tools: a failure to get them only costs their tests (which then skip), never the setup.
mapfile -t missing < <(missing_of "${test_tools[@]}")
# Any Node.js with npm will do (NodeSource's nodejs carries its own npm and excludes Debian's).
command -v npm >/dev/null || missing+=(nodejs npm)
if ((${#missing[@]} > 0)); then
  install "${missing[@]}" || echo "setup: warning: could not install ${missing[*]}; the tests that use them will skip"
fi
# onnxruntime's CPU build for Node.js, the version the export test was written against. Its install
# script would download GPU binaries from a host that may be unreachable: --ignore-scripts skips it
# (the CPU library is in the package itself).
onnxruntime="$(cd "$(dirname "$0")/.." && pwd)/build-tools/onnxruntime"
if command -v npm >/dev/null && [[ ! -f "$onnxruntime/node_modules/onnxruntime-node/package.json" ]]; then
  echo "setup: installing onnxruntime-node into $onnxruntime"
  mkdir -p "$onnxruntime"
  npm install --prefix "$onnxruntime" --ignore-scripts --save-exact --no-audit --no-fund --loglevel=error \
    onnxruntime-node@1.31.1 >/dev/null ||
    echo "setup: warning: could not install onnxruntime-node; the ONNX export test will skip"
fi
exit 0
