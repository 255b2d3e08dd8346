"""Perm-TIMIT, SRNN-hier."""
from reexam_jax import experiments


def get_config(arg=None):
  return experiments.get_config('perm_timit', 'srnn_hier', arg)
