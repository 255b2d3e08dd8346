"""Your own data: .npy/.npz files of [T, D] sequences (a folder, or one file), RNN-flat.

--config.data_dir=DIR is required. Sized for a laptop CPU; the config file argument
size=paper (`configs/array_folder_rnn_flat.py:size=paper`) gives the paper's model and schedule
instead. Options and units: docs/own_data.md."""
from reexam_jax import experiments


def get_config(arg=None):
  return experiments.get_config('array_folder', 'rnn_flat', arg)
