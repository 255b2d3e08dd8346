#!/bin/bash
# Cloud TPU pod: the same command on every host of an existing TPU VM pod. The paper's
# Blizzard SRNN-hier (global batch 128, 160k steps) as example; on a v4-32 (16 chips,
# 4 hosts) each host feeds 32 rows and each chip takes 8.
# Usage: launch/tpu_pod.sh TPU_NAME ZONE WORKDIR [CONFIG] [extra flags...]
# WORKDIR must be one directory for all hosts (a gs:// bucket or a shared mount): the
# hosts write each Orbax checkpoint together.
set -euo pipefail
name=$1; zone=$2; workdir=$3; config=${4:-configs/blizzard_srnn_hier.py}
shift $(( $# < 4 ? $# : 4 ))
# Host 0's internal address hosts the coordinator; setting JAX_COORDINATOR_ADDRESS makes
# main.py start the multi-process run, and JAX reads the process count and this host's
# id from the TPU metadata.
host0=$(gcloud compute tpus tpu-vm describe "$name" --zone="$zone" \
        --format='value(networkEndpoints[0].ipAddress)')
port=${PORT:-8476}
gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all --command="
  cd reexam_jax && JAX_COORDINATOR_ADDRESS=$host0:$port python -m reexam_jax.main \
  --config=$config --workdir=$workdir $*"
