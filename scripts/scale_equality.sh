#!/bin/bash
# The same tiny Nottingham run at three scales, one after another: 1 process x 1 device,
# 1 process x 4 CPU devices, 2 processes x 2 CPU devices (localhost, gloo); prints
# valid/test LL of each (launch/README.md, "Same numbers at any scale").
#
#   [MIDI_DIR=DIR] bash scripts/scale_equality.sh RUNS_DIR [MODEL...]
#   (default models: f_rnn f_srnn rnn_hier)
set -euo pipefail
runs=${1:?usage: $0 RUNS_DIR [MODEL...]}; shift
models=${*:-f_rnn f_srnn rnn_hier}
# The folder holding Nottingham.mat (or .pickle): $MIDI_DIR, else the library's default.
data_dir=(); [[ -n ${MIDI_DIR:-} ]] && data_dir=(--config.data_dir="$MIDI_DIR")
tiny=num_steps=6,eval_every=3,checkpoint_every=3,log_every=3,tgt_len=20,eval_tgt_len=20,\
batch_size=4,eval_batch_size=4,max_eval_batches=2,iwae_samples=4,iwae_chunk=2,d_rnn=16,\
d_emb=16,d_lat=8,progress_bar=False
mkdir -p "$runs"
port=$(python -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')
for m in $models; do
  for scale in 1x1 1x4 2x2; do
    processes=${scale%x*}; devices=${scale#*x}
    for ((i = 0; i < processes; i++)); do
      multi=(); ((processes > 1)) && multi=(--coordinator_address=localhost:$port
                                          --num_processes=$processes --process_id=$i)
      JAX_PLATFORMS=cpu JAX_NUM_CPU_DEVICES=$devices python -m reexam_jax.main \
        --config="configs/nottingham_$m.py:$tiny" "${data_dir[@]}" \
        --workdir="$runs/$m/$scale" --cpu_tuning=off "${multi[@]}" \
        > "$runs/$m.$scale.$i.log" 2>&1 &
    done
    wait
  done
done
python - "$runs" $models <<'PY'
import json, sys
runs, models = sys.argv[1], sys.argv[2:]
print('| model | scale | valid LL | test LL |\n|---|---|---|---|')
for m in models:
  for scale in ('1x1', '1x4', '2x2'):
    r = json.load(open(f'{runs}/{m}/{scale}/results.json'))
    print(f'| {m} | {scale} | {r["valid_ll"]!r} | {r["test_ll"]!r} |')
PY
