"""TIMIT, Z-SRNN-flat (paper Table 5: Z-forcing SRNN, flat output, T = 1000, D = 1).
Auxiliary cost (off in the paper's runs): `:zf_aux_weight=1.0`."""
from reexam_jax import experiments


def get_config(arg=None):
  return experiments.get_config('timit', 'zf_srnn_flat', arg)
