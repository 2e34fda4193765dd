#!/usr/bin/env bash
# Installs the Debian packages cuface needs to build and test, when they are missing.
# Idempotent and quiet when everything is present. Options:
#   --all   also the optional packages: OpenBLAS (side-by-side GEMM benchmark), PyTorch/torchvision,
#           numpy and scikit-learn (fixture generators in scripts/), dlib + its landmark model
#           (face detection in arbitrary photos), libjpeg-turbo-progs (scripts/make_jpeg_fixtures.sh).
set -euo pipefail

required=(cmake g++ make pkg-config libstb-dev libjpeg62-turbo-dev libpng-dev libgtest-dev libbenchmark-dev
          nlohmann-json3-dev libcli11-dev libopenmpi-dev openmpi-bin)
optional=(libopenblas-dev python3-torch python3-torchvision python3-numpy python3-sklearn
          libdlib-dev libdlib-data libjpeg-turbo-progs)

wanted=("${required[@]}")
[[ "${1:-}" == "--all" ]] && wanted+=("${optional[@]}")

missing=()
for package in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "setup: installing ${missing[*]}"
sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
