"""Validation ELBO (one posterior draw) and IWAE bound of a trained workdir's best
parameters, in the config's units (a training run scores valid with the ELBO only).

  python benchmarks/valid_bounds.py CONFIG[:ARG] WORKDIR [--samples 64]
"""
import argparse

import jax

import step_time  # pylint: disable=g-bad-import-order (sets up the repository path)
from reexam_jax import evaluate
from reexam_jax import state as state_lib
from reexam_jax.data import load_dataset


def main():
  ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  ap.add_argument('config', help='config file, e.g. configs/fsdd_zf_f_srnn.py')
  ap.add_argument('workdir', help="the training run's --workdir")
  ap.add_argument('--samples', type=int, default=64, help='importance samples')
  args = ap.parse_args()
  config = step_time.load_config(args.config)
  model, params, record = state_lib.restore_best(config, args.workdir)
  data = load_dataset(config)
  evaluator = evaluate.make_evaluator(config, model, data)
  key = jax.random.key(0)
  elbo = evaluator(params, data['valid'], key)
  iwae = evaluator(params, data['valid'], jax.random.fold_in(key, 1), num_samples=args.samples)
  print(f"{args.config} best_step {record['best_step']} "
        f"valid_elbo {elbo['elbo']:.4f} +- {elbo['elbo_stderr']:.4f} "
        f"valid_iwae{args.samples} {iwae['bound']:.4f} +- {iwae['bound_stderr']:.4f}")


if __name__ == '__main__':
  main()
