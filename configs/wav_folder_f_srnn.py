"""Your own data: a folder of audio files (.wav/.flac/.mp3, searched recursively), F-SRNN.

--config.data_dir=DIR is required. Sized for a laptop CPU; the config file argument
size=paper (`configs/wav_folder_f_srnn.py:size=paper`) gives the paper's model and schedule
instead. Options and units: docs/own_data.md."""
from reexam_jax import experiments


def get_config(arg=None):
  return experiments.get_config('wav_folder', 'f_srnn', arg)
