"""FSDD (3,000 real spoken digits, 8 kHz), a small Z-F-SRNN with the widths of
configs/fsdd_f_srnn.py: the CPU comparison of Z-forcing and the simplified SRNN
(docs/zforcing.md). Wavs from --config.data_dir (default
$REEXAM_SHARED_DATA/speech/fsdd/recordings); LL in nats/sample."""
from reexam_jax import experiments


def get_config(arg=None):
  return experiments.get_config('fsdd', 'zf_f_srnn', arg)
