"""Perm-TIMIT, F-SRNN."""
from reexam_jax import experiments


def get_config(arg=None):
  return experiments.get_config('perm_timit', 'f_srnn', arg)
