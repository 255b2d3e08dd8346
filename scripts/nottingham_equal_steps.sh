#!/bin/bash
# The seven MIDI models on Nottingham at an equal budget (docs/nottingham.md):
# STEPS Adam steps (cosine over STEPS), batch 16, 10 frames per training chunk (880
# elements for the flat models), KL weight 0.2 -> 1 by 80% of the run, hierarchical
# models with one low-level dropout mask per step. Evaluation at the paper's chunks.
#
#   [MIDI_DIR=DIR] bash scripts/nottingham_equal_steps.sh RUNS_DIR [STEPS] [MODEL...]
#   python -m reexam_jax.report RUNS_DIR
set -euo pipefail
runs=${1:?usage: $0 RUNS_DIR [STEPS] [MODEL...]}; steps=${2:-1000}; shift $(( $# < 2 ? $# : 2 ))
models=${*:-f_rnn f_srnn delta_rnn_random rnn_hier srnn_hier rnn_flat srnn_flat}
# The folder holding Nottingham.mat (or .pickle): $MIDI_DIR, else the library's default.
data_dir=(); [[ -n ${MIDI_DIR:-} ]] && data_dir=(--config.data_dir="$MIDI_DIR")
kl=$(python -c "print(1 / $steps)")  # 0.2 + 0.8 after 80% of the steps
for m in $models; do
  case $m in *flat) len=880 ;; *) len=10 ;; esac
  case $m in *hier) arg=:low_dropout=step ;; *) arg= ;; esac
  python -m reexam_jax.main --config="configs/nottingham_$m.py$arg" --workdir="$runs/$m" \
    "${data_dir[@]}" --config.num_steps="$steps" --config.tgt_len=$len \
    --config.kl_increment="$kl" --config.eval_every=$((steps / 2)) \
    --config.checkpoint_every=$((steps / 2)) --config.log_every=50 \
    --config.iwae_samples=8 --config.progress_bar=False
done
