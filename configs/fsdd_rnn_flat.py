"""FSDD (3,000 real spoken digits, 8 kHz), a small RNN-flat: the real-audio check of the
speech stack (docs/fsdd.md). Wavs from --config.data_dir (default
$REEXAM_SHARED_DATA/speech/fsdd/recordings); LL in nats/sample."""
from reexam_jax import experiments


def get_config(arg=None):
  return experiments.get_config('fsdd', 'rnn_flat', arg)
