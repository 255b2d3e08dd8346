"""Piano-midi.de, SRNN-flat."""
from reexam_jax import experiments


def get_config(arg=None):
  return experiments.get_config('piano_midi', 'srnn_flat', arg)
