"""Your own data: a folder of MIDI files (.mid/.midi, searched recursively) as 88-key piano rolls, F-RNN.

--config.data_dir=DIR is required. Sized for a laptop CPU; the config file argument
size=paper (`configs/midi_folder_f_rnn.py:size=paper`) gives the paper's model and schedule
instead. Options and units: docs/own_data.md."""
from reexam_jax import experiments


def get_config(arg=None):
  return experiments.get_config('midi_folder', 'f_rnn', arg)
