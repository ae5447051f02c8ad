#!/usr/bin/env bash
# Start the Ray head node of a nasconv cluster. The driver (nasconv search) runs here.
set -euo pipefail
PORT=${RAY_PORT:-6379}
CPUS=${NUM_CPUS:-$(nproc)}
ray start --head --port="$PORT" --num-cpus="$CPUS" --include-dashboard=false \
    --object-store-memory=$((512 * 1024 * 1024))
echo "head started; workers join with: workers/start-gpu-worker.sh $(hostname -I | awk '{print $1}'):$PORT"
