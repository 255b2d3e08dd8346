"""VCTK, RNN-flat. Stride variant (Table 2): `:stride=200`."""
from reexam_jax import experiments


def get_config(arg=None):
  return experiments.get_config('vctk', 'rnn_flat', arg)
