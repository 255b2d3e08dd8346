"""IAM-OnDB, F-SRNN."""
from reexam_jax import experiments


def get_config(arg=None):
  return experiments.get_config('iamondb', 'f_srnn', arg)
