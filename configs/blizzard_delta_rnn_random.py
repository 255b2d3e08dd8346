"""Blizzard 2013, delta-RNN, random split (V). Variant: `:d_leak=V`."""
from reexam_jax import experiments


def get_config(arg=None):
  return experiments.get_config('blizzard', 'delta_rnn_random', arg)
