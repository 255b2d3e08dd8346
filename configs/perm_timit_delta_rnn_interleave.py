"""Perm-TIMIT, delta-RNN, interleaving split (U). Variant: `:chk_len=U`."""
from reexam_jax import experiments


def get_config(arg=None):
  return experiments.get_config('perm_timit', 'delta_rnn_interleave', arg)
