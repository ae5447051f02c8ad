#!/usr/bin/env bash
# Join a nasconv Ray cluster as a worker node with all local GPUs.
# Usage: start-gpu-worker.sh HEAD_IP:PORT
set -euo pipefail
ADDRESS=${1:?usage: start-gpu-worker.sh HEAD_IP:PORT}
GPUS=${NUM_GPUS:-$(nvidia-smi -L 2>/dev/null | wc -l)}
CPUS=${NUM_CPUS:-$(nproc)}
ray start --address="$ADDRESS" --num-gpus="$GPUS" --num-cpus="$CPUS" \
    --object-store-memory=$((512 * 1024 * 1024))
