"""VCTK, F-RNN."""
from reexam_jax import experiments


def get_config(arg=None):
  return experiments.get_config('vctk', 'f_rnn', arg)
