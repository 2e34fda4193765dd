#!/usr/bin/env bash
# scripts/device_check.sh on a machine whose nvidia-smi lists a GPU that cuface cannot use (here: a
# CPU-only build, as an old driver would leave it) must fail loudly, not report skipped GPU tests as
# a pass. Usage: device_check_unusable_gpu.sh REPO BUILD_DIR
set -uo pipefail
repo=$1 build=$2
fake=$(mktemp -d)
trap 'rm -rf "$fake"' EXIT
cat >"$fake/nvidia-smi" <<'SMI'
#!/bin/sh
case "$1" in
  -L) echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-00000000-0000-0000-0000-000000000000)" ;;
  *) echo "NVIDIA H100 80GB HBM3, 81559 MiB, 470.82.01" ;;
esac
SMI
chmod +x "$fake/nvidia-smi"
output=$(PATH="$fake:$PATH" OUT="$fake/out" CUFACE_DEVICE_BUILD="$build" bash "$repo/scripts/device_check.sh" run 2>&1)
status=$?
if [[ $status -eq 0 ]]; then
  echo "device_check.sh passed with an unusable GPU:"; echo "$output"; exit 1
fi
if ! grep -q "FAIL: nvidia-smi lists a GPU but cuface finds none" <<<"$output"; then
  echo "device_check.sh failed without saying why:"; echo "$output"; exit 1
fi
echo "device_check.sh failed loudly (status $status), as it must"
