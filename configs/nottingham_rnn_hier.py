"""Nottingham, RNN-hier."""
from reexam_jax import experiments


def get_config(arg=None):
  return experiments.get_config('nottingham', 'rnn_hier', arg)
