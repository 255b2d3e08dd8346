#!/bin/bash
# One experiment (a config) for several seeds, one training process per usable core,
# each pinned to its core; then the report of RUNS_DIR (mean ± sd across seeds).
#
#   bash scripts/seeds.sh CONFIG RUNS_DIR N|SEED,SEED,... [FLAG...]
#
#   N                 seeds 0 .. N-1 (N <= 100); or the seeds themselves, comma-separated
#                     (one given seed: `1234,`)
#   FLAG...           passed to every run, e.g. --config.data_dir=DIR --config.num_steps=5000
#
# Workdirs are RUNS_DIR/<config name>/seed<S>, logs beside them (seed<S>.log). A seed
# whose workdir holds results.json is skipped; an interrupted one resumes. Runs go to
# the cores this script may use, at most one per core: `taskset -c 0,2 bash
# scripts/seeds.sh ...` keeps them to cores 0 and 2. Runs of one experiment with other
# flags belong in another RUNS_DIR/<name> (a workdir refuses another config).
# Exit status: 0 when every seed finished, 1 when one failed, 2 for bad arguments.
set -euo pipefail
usage="usage: $0 CONFIG RUNS_DIR N|SEED,SEED,... [FLAG...]"
if (( $# < 3 )); then echo "$usage" >&2; exit 2; fi
config=$1; runs=$2; count=$3; shift 3
flags=("$@")
python=${PYTHON:-python}

if [[ ! -f ${config%%:*} ]]; then
  echo "error: CONFIG ${config%%:*}: no such file" >&2; exit 2
fi
if [[ $count =~ ^[1-9][0-9]*$ ]]; then
  if (( count > 100 )); then
    echo "error: N=$count runs? N counts seeds (at most 100); for the one seed $count write '$count,'" >&2
    exit 2
  fi
  seeds=($(seq 0 $((count - 1))))
elif [[ $count =~ ^[0-9]+(,[0-9]+)*,?$ && $count == *,* ]]; then
  seeds=(${count//,/ })
else
  echo "error: N|SEEDS '$count': give a count >= 1 or comma-separated seeds" >&2; exit 2
fi
cores=($(python3 -c 'import os; print(*sorted(os.sched_getaffinity(0)))'))
name=$(basename "${config%%:*}" .py)
if [[ $config == *:* ]]; then name+="_${config#*:}"; fi
name=${name//[^A-Za-z0-9_.=-]/_}
mkdir -p "$runs/$name"

run_seed() {  # CORE SEED
  local core=$1 seed=$2 wd="$runs/$name/seed$2" log="$runs/$name/seed$2.log"
  if [[ -f $wd/results.json ]]; then
    echo "seed $seed: skipped, $wd/results.json exists"; return 0
  fi
  echo "seed $seed: core $core, log $log"
  local start=$SECONDS
  if taskset -c "$core" "$python" -m reexam_jax.main --config="$config" --workdir="$wd" \
      --config.seed="$seed" --config.progress_bar=False "${flags[@]}" > "$log" 2>&1; then
    echo "seed $seed: finished in $((SECONDS - start)) s"
  else
    local status=$?
    echo "seed $seed: failed (exit $status): $(tail -n 1 "$log")"; return 1
  fi
}

echo "$name: seeds ${seeds[*]} on cores ${cores[*]}"
workers=()
for ((k = 0; k < ${#cores[@]} && k < ${#seeds[@]}; k++)); do
  (  # worker k runs seeds k, k + #cores, ... one after another on core k
    failed=0
    for ((i = k; i < ${#seeds[@]}; i += ${#cores[@]})); do
      run_seed "${cores[k]}" "${seeds[i]}" || failed=1
    done
    exit $failed
  ) &
  workers+=($!)
done
failed=0
for pid in "${workers[@]}"; do wait "$pid" || failed=1; done

"$python" -m reexam_jax.report "$runs" || failed=1
exit $failed
