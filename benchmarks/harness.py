"""Benchmarks the paper's MIDI and speech models against the PyTorch yardstick and the
machine's dense-matmul peak, and writes a markdown table.

  python benchmarks/harness.py [--set midi|speech|bf16|all] [--steps N] [--warmup W]
      [--row 'CONFIG[:ARG][@batch=B,steps=N,warmup=W]' ...] [--no-torch]
      [--cpu-tuning auto|off] [--out benchmarks/results.md]

For every row: our jitted training step (benchmarks/step_time.py in a fresh process:
compile time, median step time, peak RSS), the PyTorch yardstick (read from
../shared/bench/torch_reference.py beside the repository; same preset, batch and step
counts, also a fresh process), model
FLOPs per step from benchmarks/flops.py, and the achieved FLOP/s as a fraction of the
peak measured in the same run. --steps/--warmup override every row's own counts
(slow rows default to fewer). --row adds rows, e.g.
`--row configs/nottingham_srnn_hier.py:low_dropout=step@steps=2,warmup=1`.
"""
import argparse
import dataclasses
import datetime
import os
import subprocess
import sys
import time
from typing import Optional

import flops
import step_time


@dataclasses.dataclass
class Row:
  """One benchmark row: a config (path[:arg]) and its batch and step counts."""
  config: str
  batch: Optional[int] = None  # None: the config's batch
  steps: int = 20
  warmup: int = 3


SLOW = dict(steps=3, warmup=1)  # seconds per step: hier (literal low level), flat
SETS = {
    'midi': [
        Row('configs/nottingham_f_rnn.py'),
        Row('configs/nottingham_f_srnn.py'),
        Row('configs/nottingham_rnn_hier.py', **SLOW),
        Row('configs/nottingham_rnn_hier.py:low_dropout=step', **SLOW),
        Row('configs/nottingham_srnn_hier.py', **SLOW),
        Row('configs/nottingham_rnn_flat.py', **SLOW),
        Row('configs/nottingham_rnn_flat.py:remat_chunk=400', **SLOW),  # memory option
        Row('configs/nottingham_delta_rnn_random.py'),
    ],
    # Reduced batches: the yardstick's speech hier needs ~0.5 GB of RAM per batch row.
    'speech': [
        Row('configs/timit_f_rnn.py', batch=4, steps=10),
        Row('configs/timit_rnn_hier.py', batch=1, **SLOW),
    ],
    # Paper Table 5: Z-forcing against the simplified SRNN (no yardstick preset:
    # run with --no-torch), TIMIT widths at a small batch and the FSDD widths.
    'zforcing': [
        Row('configs/timit_f_srnn.py', batch=4, steps=10),
        Row('configs/timit_zf_f_srnn.py', batch=4, steps=10),
        Row('configs/timit_srnn_flat.py:tgt_len=1000', batch=1, **SLOW),
        Row('configs/timit_zf_srnn_flat.py', batch=1, **SLOW),
        Row('configs/fsdd_f_srnn.py'),
        Row('configs/fsdd_zf_f_srnn.py'),
    ],
}
# Mixed precision (bfloat16 matmul operands, float32 accumulation) against the
# yardstick's float32: what a CPU user gains by opting in.
BF16 = 'matmul_precision=BF16_BF16_F32'
SETS['bf16'] = [dataclasses.replace(row, config=row.config + (',' if ':' in row.config else ':')
                                    + BF16)
                for row in SETS['midi'] + SETS['speech'] if 'remat' not in row.config]
SETS['all'] = SETS['midi'] + SETS['speech'] + SETS['bf16']

COLUMNS = ('config', 'batch', 'compile s', 'ours ms', 'torch ms', 'ratio', 'ours seq/s',
           'model GFLOP/step', 'achieved GFLOP/s', '% of peak', 'our peak MB',
           'XLA temp MB', 'torch peak MB')

MATMUL_N = 2048  # peak probe: [N, N] x [N, N], float32 and bfloat16 operands
PEAK_REPS = 10


def parse_row(spec: str) -> Row:
  """'CONFIG[:ARG][@batch=B,steps=N,warmup=W]' -> Row."""
  config, _, opts = spec.partition('@')
  fields = {}
  for item in filter(None, opts.split(',')):
    key, _, value = item.partition('=')
    if key not in ('batch', 'steps', 'warmup'):
      raise ValueError(f'--row option {key!r}: expected batch, steps or warmup')
    fields[key] = int(value)
  return Row(config, **fields)


def measure_peak() -> None:
  """Prints the median GFLOP/s of a float32 matmul in jax and in numpy, and of a jax
  matmul of bfloat16 operands with float32 accumulation (this runs in a child process,
  so that the parent stays small for the RSS figures)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  a, b = (rng.standard_normal((MATMUL_N, MATMUL_N), np.float32) for _ in range(2))
  ja, jb = jnp.asarray(a), jnp.asarray(b)
  matmul = jax.jit(jnp.matmul)
  ja16, jb16 = ja.astype(jnp.bfloat16), jb.astype(jnp.bfloat16)
  matmul16 = jax.jit(lambda x, y: jnp.matmul(x, y, preferred_element_type=jnp.float32))
  for name, run in (('jax', lambda: matmul(ja, jb).block_until_ready()),
                    ('numpy', lambda: a @ b),
                    ('jax_bf16', lambda: matmul16(ja16, jb16).block_until_ready())):
    run(), run()  # compile / warm up
    times = []
    for _ in range(PEAK_REPS):
      t0 = time.perf_counter()
      run()
      times.append(time.perf_counter() - t0)
    median = sorted(times)[len(times) // 2]
    print(f'{name}_matmul_gflops: {2 * MATMUL_N ** 3 / median / 1e9:.1f}')
  print(f'versions: jax {jax.__version__}, numpy {np.__version__}')


def peak_gflops():
  """-> (jax, numpy, jax bfloat16 GFLOP/s, versions line), measured in a fresh process."""
  out, _ = step_time.run_child([sys.executable, os.path.abspath(__file__), '--peak-only'])
  versions = [l for l in out.splitlines() if l.startswith('versions:')][-1]
  return (step_time.last_value(out, 'jax_matmul_gflops'),
          step_time.last_value(out, 'numpy_matmul_gflops'),
          step_time.last_value(out, 'jax_bf16_matmul_gflops'), versions[len('versions: '):])


def bench_row(row: Row, peaks: dict, with_torch: bool, torch_cache: dict,
              cpu_tuning: str) -> dict:
  """Measures one row -> table cells (and notes for the footer); % of peak against the
  peak of the row's matmul operand type (peaks: {'float32': ..., 'bfloat16': ...})."""
  config = step_time.load_config(row.config)
  peak = peaks['bfloat16' if config.matmul_precision == 'BF16_BF16_F32' else 'float32']
  batch = row.batch or config.batch_size
  count = flops.train_step_flops(config, batch)
  compile_s, ours_ms, ours_mb, temp_mb = step_time.time_jax_fresh(
      row.config, row.steps, row.warmup, batch, cpu_tuning)
  cells = {'config': f'`{os.path.basename(row.config)}`', 'batch': batch,
           'compile s': f'{compile_s:.1f}', 'ours ms': f'{ours_ms:.1f}',
           'ours seq/s': f'{1e3 * batch / ours_ms:.1f}',
           'model GFLOP/step': f'{count["total"] / 1e9:.2f}',
           'achieved GFLOP/s': f'{count["total"] / ours_ms / 1e6:.1f}',
           '% of peak': f'{100 * count["total"] / ours_ms / 1e6 / peak:.1f}',
           'our peak MB': f'{ours_mb:.0f}', 'XLA temp MB': f'{temp_mb:.0f}',
           'torch ms': '-', 'ratio': '-',
           'torch peak MB': '-'}
  notes = []
  if count['executed'] != count['total']:
    notes.append(f'runs the restructured low level: {count["executed"] / 1e9:.2f} GFLOP '
                 f'executed per step, {count["executed"] / ours_ms / 1e6:.1f} GFLOP/s')
  if with_torch:
    preset = step_time.default_preset(config)
    key = (preset, batch, row.steps, row.warmup)
    if key not in torch_cache:
      torch_cache[key] = step_time.time_torch(preset, row.steps, row.warmup, batch)
    torch_ms, torch_mb = torch_cache[key]
    cells.update({'torch ms': f'{torch_ms:.1f}', 'ratio': f'{ours_ms / torch_ms:.3f}',
                  'torch peak MB': f'{torch_mb:.0f}'})
    notes.append(f'yardstick preset {preset}')
  cells['notes'] = notes
  return cells


def write_table(path: str, header: list, rows: list) -> str:
  """Writes (and returns) the markdown: header lines, the table, per-row notes."""
  lines = header + ['', '| ' + ' | '.join(COLUMNS) + ' |',
                    '|' + '---|' * len(COLUMNS)]
  lines += ['| ' + ' | '.join(str(r.get(c, '-')) for c in COLUMNS) + ' |' for r in rows]
  notes = [f'- {r["config"]} (batch {r["batch"]}): {"; ".join(r["notes"])}'
           for r in rows if r['notes']]
  text = '\n'.join(lines + ([''] + notes if notes else [])) + '\n'
  with open(path, 'w') as f:
    f.write(text)
  return text


def cpu_model() -> str:
  """The CPU's model name from /proc/cpuinfo ('unknown' elsewhere)."""
  try:
    with open('/proc/cpuinfo') as f:
      return next(l.split(':', 1)[1].strip() for l in f if l.startswith('model name'))
  except (OSError, StopIteration):
    return 'unknown'


def main():
  ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  ap.add_argument('--set', choices=sorted(SETS), default=None,
                  help='default: midi, or no set when --row is given')
  ap.add_argument('--steps', type=int, default=None, help="timed steps (default: per row)")
  ap.add_argument('--warmup', type=int, default=None, help='untimed steps after compiling')
  ap.add_argument('--row', action='append', default=[], help='extra row, see the doc')
  ap.add_argument('--no-torch', action='store_true', help='skip the yardstick')
  ap.add_argument('--cpu-tuning', choices=('auto', 'off'), default='auto',
                  help="main.py's --cpu_tuning, for our steps; its huge pages also for "
                       'the yardstick')
  ap.add_argument('--out', default=os.path.join(step_time.REPO, 'benchmarks', 'results.md'))
  ap.add_argument('--peak-only', action='store_true', help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.peak_only:
    measure_peak()
    return

  from reexam_jax import runtime  # pylint: disable=g-import-not-at-top
  # May restart the harness first: every child, ours and the yardstick, inherits its
  # huge pages.
  tuning = runtime.apply(args.cpu_tuning)
  print(tuning, flush=True)
  os.chdir(step_time.REPO)  # config paths are relative to the repository
  set_name = args.set or ('midi' if not args.row else None)
  rows = SETS.get(set_name, []) + [parse_row(spec) for spec in args.row]
  for row in rows:
    row.steps = args.steps if args.steps is not None else row.steps
    row.warmup = args.warmup if args.warmup is not None else row.warmup
  jax_peak, numpy_peak, bf16_peak, versions = peak_gflops()
  peaks = dict(float32=max(jax_peak, numpy_peak), bfloat16=bf16_peak)
  header = [
      f'# Training-step benchmark ({datetime.date.today()}, set {set_name or "--row only"})', '',
      f'- Machine: {cpu_model()}, {len(os.sched_getaffinity(0))} usable cores; '
      f'{versions}.',
      f'- Peak: float32 {MATMUL_N}x{MATMUL_N} matmul, median of {PEAK_REPS}: jax '
      f'{jax_peak:.1f}, numpy {numpy_peak:.1f} GFLOP/s; % of peak uses the max '
      f'(rows with matmul_precision=BF16_BF16_F32: the jax bfloat16-operand matmul, '
      f'{bf16_peak:.1f} GFLOP/s).',
      '- ours/torch ms: median step (forward, backward, clip, Adam) on random batches; '
      'compile s: first call of the jitted step. Steps (warm-up) per row: '
      + ', '.join(f'{os.path.basename(r.config)} {r.steps} ({r.warmup})' for r in rows)
      + '.',
      '- ours seq/s: training sequences (chunks of tgt_len steps) per second = batch / '
      'step time.',
      '- Model FLOPs: benchmarks/flops.py, matmuls only, training step = 3 x forward, '
      "hier low level as the reference computes it; achieved = model FLOPs / our step.",
      '- Peak MB: peak RSS (ru_maxrss from wait4) of a fresh process per measurement, '
      'imports and compilation included.',
      f'- --cpu-tuning={args.cpu_tuning}: {tuning}; both frameworks run with '
      f'GLIBC_TUNABLES={os.environ.get("GLIBC_TUNABLES", "")!r} (reexam_jax/runtime.py).',
  ]
  torch_cache, results = {}, []
  for row in rows:
    print(f'[{datetime.datetime.now():%H:%M:%S}] {row.config} ...', flush=True)
    try:
      results.append(bench_row(row, peaks, not args.no_torch, torch_cache,
                               args.cpu_tuning))
    except subprocess.CalledProcessError as err:
      print(err.output[-3000:], file=sys.stderr)
      results.append({'config': f'`{os.path.basename(row.config)}`', 'batch': row.batch or '-',
                      'notes': [f'failed: {" ".join(map(str, err.cmd[1:3]))} exited '
                                f'{err.returncode}']})
    text = write_table(args.out, header, results)
  print(text)


if __name__ == '__main__':
  main()
