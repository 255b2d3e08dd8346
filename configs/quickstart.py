"""Quickstart: F-RNN on the Bach chorales that ship with music21, on any laptop, offline.

A few minutes on 2 CPU cores; the first run parses the scores (about 30 s) and caches
the piano rolls under data_dir.
"""
from reexam_jax import experiments

# A short cosine schedule with frequent validation; `arg` may override any of these.
SHORT_RUN = 'num_steps=2000,eval_every=500,checkpoint_every=500'


def get_config(arg=None):
  return experiments.get_config('bach_music21', 'f_rnn', ','.join(filter(None, [SHORT_RUN, arg])))
