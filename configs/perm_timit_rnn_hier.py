"""Perm-TIMIT, RNN-hier."""
from reexam_jax import experiments


def get_config(arg=None):
  return experiments.get_config('perm_timit', 'rnn_hier', arg)
