#!/bin/bash
# Cloud TPU pod: run the same command on every host of an existing TPU VM pod.
# Usage: launch/tpu_pod.sh TPU_NAME ZONE CONFIG WORKDIR [extra flags...]
set -euo pipefail
name=$1; zone=$2; config=$3; workdir=$4; shift 4
gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all --command="
  cd reexam_jax && python -m reexam_jax.main --config=$config --workdir=$workdir $*"
