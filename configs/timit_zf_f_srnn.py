"""TIMIT, Z-F-SRNN (paper Table 5: Z-forcing SRNN, factorised output, T = 40, D = 200).
Auxiliary cost (off in the paper's runs): `:zf_aux_weight=1.0`."""
from reexam_jax import experiments


def get_config(arg=None):
  return experiments.get_config('timit', 'zf_f_srnn', arg)
