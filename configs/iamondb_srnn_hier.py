"""IAM-OnDB, SRNN-hier."""
from reexam_jax import experiments


def get_config(arg=None):
  return experiments.get_config('iamondb', 'srnn_hier', arg)
