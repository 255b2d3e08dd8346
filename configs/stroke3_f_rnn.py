"""stroke-3 handwriting (default: the Omniglot file in $REEXAM_SHARED_DATA), F-RNN."""
from reexam_jax import experiments


def get_config(arg=None):
  return experiments.get_config('stroke3', 'f_rnn', arg)
