"""Piano-midi.de, F-RNN."""
from reexam_jax import experiments


def get_config(arg=None):
  return experiments.get_config('piano_midi', 'f_rnn', arg)
