"""MuseData, SRNN-hier."""
from reexam_jax import experiments


def get_config(arg=None):
  return experiments.get_config('muse', 'srnn_hier', arg)
