"""Blizzard 2013, SRNN-hier."""
from reexam_jax import experiments


def get_config(arg=None):
  return experiments.get_config('blizzard', 'srnn_hier', arg)
