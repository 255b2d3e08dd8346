#!/bin/bash
# Multi-node GPU training: one process per node, all of its GPUs in the mesh. The
# paper's VCTK RNN-hier (global batch 128 over 2 x 8 = 16 GPUs, 8 rows each) as example.
# Usage: sbatch launch/slurm_multinode.sh [CONFIG] [WORKDIR] [extra flags...]
#SBATCH --job-name=reexam_jax
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --time=24:00:00
set -euo pipefail
config=${1:-configs/vctk_rnn_hier.py}; workdir=${2:-runs/vctk_rnn_hier}; shift $(( $# < 2 ? $# : 2 ))
# The first node of the allocation is process 0 and hosts the coordinator.
coordinator=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
port=${PORT:-12355}
# Single quotes: each task expands SLURM_PROCID (0 .. SLURM_NTASKS-1) itself.
srun bash -c 'exec python -m reexam_jax.main --config="$0" --workdir="$1" \
  --coordinator_address="$2" --num_processes="$SLURM_NTASKS" --process_id="$SLURM_PROCID" \
  "${@:3}"' "$config" "$workdir" "$coordinator:$port" "$@"
