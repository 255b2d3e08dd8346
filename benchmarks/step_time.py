"""Times one training step of our jitted `train.make_train_step` against the PyTorch
yardstick (read from ../shared/bench/torch_reference.py beside the repository; see
docs/benchmarks.md) in the same run, and prints the ratio.

  python benchmarks/step_time.py configs/nottingham_f_rnn.py [--steps 30] [--warmup 3]
      [--batch B] [--preset midi_f_rnn] [--no-torch] [--cpu-tuning auto|off]
      [--devices N]

Data are random Bernoulli(0.1) (MIDI) or Gaussian (speech) batches of the config's
shape, drawn before the timer starts, as the yardstick does. One step is the whole
jitted update (forward, backward, clipping, Adam), timed to `block_until_ready`.
--cpu-tuning is main.py's --cpu_tuning (reexam_jax/runtime.py); the yardstick runs in
the same environment (huge pages or not).
--devices N splits the CPU into N JAX devices (jax_num_cpu_devices) and shards each
batch over them as training does (reexam_jax.parallel); 1 leaves the step to XLA's own
intra-op threads. Pin the cores with taskset to compare the two on a multi-core CPU.
benchmarks/harness.py runs many configs through the helpers here (`time_jax_fresh`,
`time_torch`) and adds FLOPs, peak and memory figures.
"""
import argparse
import importlib.util
import os
import re
import resource
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
TORCH_REFERENCE = os.path.join(os.path.dirname(REPO), 'shared', 'bench', 'torch_reference.py')


def load_config(path: str):
  """Loads an ml_collections config file `path[:arg]`."""
  path, _, arg = path.partition(':')
  spec = importlib.util.spec_from_file_location('bench_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg or None)


def default_preset(config) -> str:
  """The yardstick preset of config's cell: midi_f_rnn, speech_rnn_hier, ..."""
  from reexam_jax import experiments  # pylint: disable=g-import-not-at-top
  return f'{experiments.DATASETS[config.dataset].domain}_{config.model.name}'


def time_jax(config, steps: int, warmup: int, batch: int):
  """-> (compile seconds, per-step ms list)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from reexam_jax import models, parallel, train  # pylint: disable=g-import-not-at-top
  from reexam_jax import state as state_lib  # pylint: disable=g-import-not-at-top

  model = models.build_model(config.model, precision=config.matmul_precision)
  params = models.init_params(model, jax.random.key(0), config.model.d_data)
  optimizer = state_lib.make_optimizer(config)
  mesh = parallel.make_mesh()
  state = jax.device_put(state_lib.initial_state(params, optimizer),
                         parallel.replicated(mesh))
  step_fn = train.make_train_step(model, optimizer, config)
  rng = np.random.default_rng(0)
  t, d = config.tgt_len, config.model.d_data

  def batch_fn():
    if config.model.head == 'bernoulli':
      s = (rng.random((t + 1, batch, d)) < 0.1).astype(np.float32)
    else:
      s = rng.standard_normal((t + 1, batch, d)).astype(np.float32)
    return parallel.put_batch(s[:-1], mesh, batch), parallel.put_batch(s[1:], mesh, batch)

  key = jax.random.key(1)
  x, y = batch_fn()
  t0 = time.perf_counter()
  step_fn = step_fn.lower(state, x, y, key).compile()
  compile_s = time.perf_counter() - t0
  # XLA's own accounting of the step's temporary buffers (activations kept for the
  # backward pass, workspaces): what rematerialisation reduces.
  print(f'jax_temp_mb: {step_fn.memory_analysis().temp_size_in_bytes / 2**20:.1f}')
  for _ in range(warmup):
    state, metrics = step_fn(state, *batch_fn(), key)
  jax.block_until_ready((state, metrics))
  times = []
  before = resource.getrusage(resource.RUSAGE_SELF)
  for _ in range(steps):
    x, y = batch_fn()
    jax.block_until_ready((x, y))
    t0 = time.perf_counter()
    state, metrics = step_fn(state, x, y, key)
    jax.block_until_ready((state, metrics))
    times.append(1e3 * (time.perf_counter() - t0))
  after = resource.getrusage(resource.RUSAGE_SELF)
  # What --cpu-tuning changes, per step (batches included): page faults, kernel time,
  # and CPU time (unlike wall time, not inflated by other processes on the same cores).
  per_step = lambda field: (getattr(after, field) - getattr(before, field)) / steps
  print(f'jax_step_minor_faults: {per_step("ru_minflt"):.0f}')
  print(f'jax_step_sys_ms: {1e3 * per_step("ru_stime"):.2f}')
  print(f'jax_step_cpu_ms: {1e3 * (per_step("ru_utime") + per_step("ru_stime")):.2f}')
  print(f'jax_final_loss: {float(metrics["loss"]):.4f}')
  return compile_s, times


def run_child(cmd):
  """Runs cmd -> (stdout and stderr, peak RSS in MB). The peak is the child's
  ru_maxrss from wait4; Linux folds the parent's high-water mark into a forked child's,
  so it is only meaningful when the caller is small (benchmarks/harness.py imports
  neither jax nor torch)."""
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  out = proc.stdout.read()
  _, status, usage = os.wait4(proc.pid, 0)
  proc.returncode = os.waitstatus_to_exitcode(status)
  if proc.returncode:
    raise subprocess.CalledProcessError(proc.returncode, cmd, out)
  return out, usage.ru_maxrss / 1024  # KiB on Linux


def last_value(output: str, key: str) -> float:
  """The number on the last `key: X` line of a child's output."""
  return float(re.findall(rf'^{key}:\s*(\S+)', output, re.M)[-1])


def time_torch(preset: str, steps: int, warmup: int, batch: int):
  """Runs the yardstick in a subprocess -> (its step_ms_median, its peak RSS MB)."""
  out, peak_mb = run_child([sys.executable, TORCH_REFERENCE, preset, '--steps', str(steps),
                            '--warmup', str(warmup), '--batch', str(batch)])
  return last_value(out, 'step_ms_median'), peak_mb


def time_jax_fresh(config_path: str, steps: int, warmup: int, batch: int,
                   cpu_tuning: str = 'auto'):
  """Runs this script (JAX only) in a fresh process -> (compile s, median step ms,
  peak RSS MB of the whole process: imports, compilation and the steps, XLA temp MB)."""
  out, peak_mb = run_child([sys.executable, os.path.abspath(__file__), config_path,
                            '--steps', str(steps), '--warmup', str(warmup),
                            '--batch', str(batch), '--no-torch',
                            '--cpu-tuning', cpu_tuning])
  return (last_value(out, 'jax_compile_s'), last_value(out, 'jax_step_ms_median'), peak_mb,
          last_value(out, 'jax_temp_mb'))


def main():
  ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  ap.add_argument('config', help='config file, e.g. configs/nottingham_f_rnn.py')
  ap.add_argument('--steps', type=int, default=30, help='timed steps (each framework)')
  ap.add_argument('--warmup', type=int, default=3, help='untimed steps after compiling')
  ap.add_argument('--batch', type=int, default=None, help='default: the config batch')
  ap.add_argument('--preset', default=None, help='yardstick preset (default from config)')
  ap.add_argument('--no-torch', action='store_true', help='skip the yardstick')
  ap.add_argument('--cpu-tuning', choices=('auto', 'off'), default='auto',
                  help="main.py's --cpu_tuning: malloc thresholds and huge pages (the "
                       'latter for both frameworks); off, for comparison')
  ap.add_argument('--devices', type=int, default=1,
                  help='CPU devices the batch is sharded over (1: XLA intra-op threads only)')
  args = ap.parse_args()

  from reexam_jax import runtime  # pylint: disable=g-import-not-at-top
  print(runtime.apply(args.cpu_tuning), flush=True)  # may restart this script first
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_num_cpu_devices', args.devices)  # before the backend starts
  config = load_config(args.config)
  batch = args.batch or config.batch_size
  preset = args.preset or default_preset(config)
  print(f'config: {args.config} (model {config.model.name}, batch {batch}, '
        f'tgt_len {config.tgt_len}, D {config.model.d_data}, H {config.model.d_rnn}, '
        f'{args.devices} device(s))')

  compile_s, times = time_jax(config, args.steps, args.warmup, batch)
  jax_ms = statistics.median(times)
  print(f'jax_compile_s: {compile_s:.2f}')
  print(f'jax_step_ms_min: {min(times):.3f}')
  print(f'jax_step_ms_median: {jax_ms:.3f}')
  if args.no_torch:
    return
  # Its peak RSS is left out: this process already holds jax, which run_child's
  # figure would include (benchmarks/harness.py measures both from a small parent).
  torch_ms, _ = time_torch(preset, args.steps, args.warmup, batch)
  print(f'torch_preset: {preset}')
  print(f'torch_step_ms_median: {torch_ms:.3f}')
  print(f'ratio_jax_over_torch: {jax_ms / torch_ms:.3f}')


if __name__ == '__main__':
  main()
