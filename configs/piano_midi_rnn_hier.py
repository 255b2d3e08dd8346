"""Piano-midi.de, RNN-hier."""
from reexam_jax import experiments


def get_config(arg=None):
  return experiments.get_config('piano_midi', 'rnn_hier', arg)
