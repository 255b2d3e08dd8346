#!/bin/bash
# Multi-node GPU training: one process per node, all of its GPUs in the mesh.
# Usage: sbatch launch/slurm_multinode.sh CONFIG WORKDIR [extra flags...]
#SBATCH --job-name=reexam_jax
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --time=24:00:00
set -euo pipefail
config=$1; workdir=$2; shift 2
# jax.distributed.initialize() reads SLURM's variables to find the coordinator.
srun python -m reexam_jax.main --config="$config" --workdir="$workdir" "$@"
