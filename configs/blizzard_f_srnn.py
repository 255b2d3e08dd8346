"""Blizzard 2013, F-SRNN."""
from reexam_jax import experiments


def get_config(arg=None):
  return experiments.get_config('blizzard', 'f_srnn', arg)
