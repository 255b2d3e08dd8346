"""JSB Chorales, SRNN-flat."""
from reexam_jax import experiments


def get_config(arg=None):
  return experiments.get_config('jsb', 'srnn_flat', arg)
