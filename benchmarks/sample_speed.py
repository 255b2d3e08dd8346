"""Times ancestral sampling (`models.sampling.sample`, what `--mode=sample` runs) on
randomly initialised models.

  python benchmarks/sample_speed.py [ROW ...] [--samples 8] [--repeats 5]

A ROW is `CONFIG[:ARG][@steps=N]` (default steps: 200). No data or checkpoint is
needed: the model is `models.build_model`'s (default precision) with the parameters of
`models.init_params`. Each row compiles the jitted sampler once (compile s), then draws
`--samples` sequences in parallel `--repeats` times with fresh keys; steps/s is
num_steps over the median wall time of a draw, timed to `block_until_ready`, and CPU
steps/s the same over the process's CPU time, which other processes on the core do not
inflate. The recurrent state is reset every config.tgt_len steps, as `--mode=sample`
does. Run old and new code alternately, pinned to one core (`taskset -c 0`), to compare
them; reexam_jax is imported from PYTHONPATH, so

  PYTHONPATH=/path/to/other/checkout python benchmarks/sample_speed.py

times another checkout with this script.
"""
import argparse
import importlib.util
import os
import statistics
import time

ROWS = ('configs/nottingham_f_rnn.py@steps=800', 'configs/nottingham_f_srnn.py@steps=400',
        'configs/nottingham_rnn_hier.py@steps=40', 'configs/nottingham_delta_rnn_random.py',
        'configs/timit_f_rnn.py@steps=40', 'configs/timit_f_srnn.py@steps=40',
        'configs/timit_rnn_hier.py@steps=10', 'configs/perm_timit_rnn_hier.py@steps=10')
DEFAULT_STEPS = 200


def load_config(path: str):
  """Loads an ml_collections config file `path[:arg]` (as benchmarks/step_time.py does,
  without its sys.path entry for this checkout)."""
  path, _, arg = path.partition(':')
  spec = importlib.util.spec_from_file_location('bench_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg or None)


def time_row(row: str, num_samples: int, repeats: int):
  """-> (config, num_steps, compile s, steady-state steps/s by wall and by CPU time) of
  one ROW."""
  import jax  # pylint: disable=g-import-not-at-top
  from reexam_jax import models  # pylint: disable=g-import-not-at-top
  from reexam_jax.models import sampling  # pylint: disable=g-import-not-at-top

  path, _, opts = row.partition('@')
  num_steps = int(opts.partition('steps=')[2] or DEFAULT_STEPS)
  config = load_config(path)
  model = models.build_model(config.model)
  params = models.init_params(model, jax.random.key(0), config.model.d_data)
  key = jax.random.key(1)
  t0 = time.perf_counter()
  compiled = sampling.sample.lower(model, params, key, num_samples, num_steps, 1.0,
                                   config.tgt_len).compile()
  compile_s = time.perf_counter() - t0
  jax.block_until_ready(compiled(params, key, 1.0))  # warm-up
  wall, cpu = [], []
  for r in range(repeats):
    key = jax.random.key(2 + r)
    t0, c0 = time.perf_counter(), time.process_time()
    jax.block_until_ready(compiled(params, key, 1.0))
    wall.append(time.perf_counter() - t0)
    cpu.append(time.process_time() - c0)
  name = os.path.basename(path.partition(':')[0])
  return (name, num_steps, compile_s, num_steps / statistics.median(wall),
          num_steps / statistics.median(cpu))


def main():
  ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  ap.add_argument('rows', nargs='*', default=ROWS, help='CONFIG[:ARG][@steps=N]')
  ap.add_argument('--samples', type=int, default=8, help='sequences drawn in parallel')
  ap.add_argument('--repeats', type=int, default=5, help='timed draws (median)')
  args = ap.parse_args()
  print('| config | samples | steps | compile s | steps/s | CPU steps/s |')
  print('|---|---|---|---|---|---|')
  for row in args.rows:
    name, num_steps, compile_s, wall, cpu = time_row(row, args.samples, args.repeats)
    print(f'| `{name}` | {args.samples} | {num_steps} | {compile_s:.1f} | {wall:.1f} | '
          f'{cpu:.1f} |', flush=True)


if __name__ == '__main__':
  main()
