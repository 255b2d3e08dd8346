"""JSB Chorales, RNN-flat."""
from reexam_jax import experiments


def get_config(arg=None):
  return experiments.get_config('jsb', 'rnn_flat', arg)
