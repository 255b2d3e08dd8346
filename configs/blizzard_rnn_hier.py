"""Blizzard 2013, RNN-hier."""
from reexam_jax import experiments


def get_config(arg=None):
  return experiments.get_config('blizzard', 'rnn_hier', arg)
