"""stroke-3, Z-forcing F-SRNN (the reference's srnn_zforce)."""
from reexam_jax import experiments


def get_config(arg=None):
  return experiments.get_config('stroke3', 'zf_f_srnn', arg)
