#!/bin/bash
# One host, several GPUs, one process per GPU (the multi-process layout of a cluster,
# on one machine). The paper's VCTK SRNN-hier (global batch 128, 80k steps) as example.
# Usage: launch/local_multi_gpu.sh WORKDIR [NUM_GPUS] [extra flags...]
# (One process that sees all GPUs is simpler and gives the same numbers:
#  python -m reexam_jax.main --config=configs/vctk_srnn_hier.py --workdir=WORKDIR)
set -euo pipefail
workdir=$1; gpus=${2:-$(nvidia-smi --list-gpus | wc -l)}; shift $(( $# < 2 ? $# : 2 ))
config=${CONFIG:-configs/vctk_srnn_hier.py}
port=${PORT:-12355}  # any free TCP port on this host; process 0 listens on it
pids=()
for ((i = 0; i < gpus; i++)); do
  CUDA_VISIBLE_DEVICES=$i python -m reexam_jax.main --config="$config" --workdir="$workdir" \
    --coordinator_address="localhost:$port" --num_processes="$gpus" --process_id="$i" "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
