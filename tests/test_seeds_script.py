"""scripts/seeds.sh, with training replaced by a stand-in (PYTHON= a wrapper that fakes
`python -m reexam_jax.main` and runs everything else, the report included, for real)."""
import json
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, 'scripts', 'seeds.sh')

WRAPPER = """#!/bin/bash
if [[ $1 == -m && $2 == reexam_jax.main ]]; then exec "$REAL_PYTHON" "$FAKE_TRAIN" "${@:3}"; fi
exec "$REAL_PYTHON" "$@"
"""
# Logs the cores each run is pinned to, then pins it.
TASKSET = """#!/bin/bash
echo "$2 $*" >> "$TASKSET_LOG"
exec {taskset} "$@"
"""
# Records how it was started (flags, cores, times) and writes what training writes.
FAKE_TRAIN = """
import json, os, sys, time
start = time.time()
flags = dict(a[2:].split('=', 1) for a in sys.argv[1:])
seed = int(flags['config.seed'])
if str(seed) == os.environ.get('FAIL_SEED'):
  print('error: --config.data_dir=/nowhere: no such directory', file=sys.stderr)
  sys.exit(2)
time.sleep(0.2)
workdir = flags['workdir']
os.makedirs(workdir)
config = dict(dataset='nottingham', model=dict(name='f_rnn'), seed=seed,
              num_steps=int(flags.get('config.num_steps', 20000)))
for name, record in (
    ('config.json', config),
    ('results.json', dict(dataset='nottingham', model='f_rnn', test_ll=-3.4 - seed / 100,
                          ll_unit='nats/88-note step')),
    ('call.json', dict(argv=sys.argv[1:], cores=sorted(os.sched_getaffinity(0)),
                       start=start, end=time.time()))):
  with open(os.path.join(workdir, name), 'w') as f:
    json.dump(record, f)
"""


@pytest.fixture
def env(tmp_path):
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  for name, text in (('python', WRAPPER),
                     ('taskset', TASKSET.format(taskset=shutil.which('taskset')))):
    (bin_dir / name).write_text(text)
    (bin_dir / name).chmod(0o755)
  (tmp_path / 'fake_train.py').write_text(FAKE_TRAIN)
  return dict(os.environ, PYTHON=str(bin_dir / 'python'), REAL_PYTHON=sys.executable,
              FAKE_TRAIN=str(tmp_path / 'fake_train.py'), TASKSET_LOG=str(tmp_path / 'taskset'),
              PATH=f'{bin_dir}:{os.environ["PATH"]}')


def _seeds(env, runs, seeds, *flags):
  return subprocess.run(['bash', SCRIPT, 'configs/nottingham_f_rnn.py', str(runs), seeds,
                         *flags], cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=120)


def _calls(runs):
  cell = runs / 'nottingham_f_rnn'
  return {int(d.name[4:]): json.loads((d / 'call.json').read_text())
          for d in cell.iterdir() if (d / 'call.json').exists()}


def test_seeds_pinned_one_per_core_then_report(tmp_path, env):
  runs = tmp_path / 'runs'
  out = _seeds(env, runs, '3', '--config.num_steps=7')
  assert out.returncode == 0, out.stdout + out.stderr
  calls = _calls(runs)
  assert sorted(calls) == [0, 1, 2]
  for seed, call in calls.items():
    assert call['argv'] == ['--config=configs/nottingham_f_rnn.py',
                            f'--workdir={runs}/nottingham_f_rnn/seed{seed}',
                            f'--config.seed={seed}', '--config.progress_bar=False',
                            '--config.num_steps=7']
  # Each run pinned to one core of the script's own, as many cores used as there are
  # (up to the number of seeds), and never two runs on one core at once.
  usable = sorted(os.sched_getaffinity(0))
  pinned = {}
  for line in (tmp_path / 'taskset').read_text().splitlines():
    words = line.split()  # CORE -c CORE python -m reexam_jax.main ... --config.seed=S ...
    seed = next(w for w in words if w.startswith('--config.seed='))
    pinned[int(seed.split('=')[1])] = int(words[0])
  assert sorted(pinned) == [0, 1, 2]
  for seed, call in calls.items():
    assert call['cores'] == [pinned[seed]] and pinned[seed] in usable
  by_core = {}
  for call in calls.values():
    by_core.setdefault(call['cores'][0], []).append((call['start'], call['end']))
  assert len(by_core) == min(len(usable), 3)
  for spans in by_core.values():
    spans.sort()
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))
  lines = out.stdout.splitlines()
  assert f'nottingham_f_rnn: seeds 0 1 2 on cores {" ".join(map(str, usable))}' == lines[0]
  assert '| F-RNN | -3.41 ± 0.01 / -3.4 (-0.01, -1.0 sd) n=3 |' in lines

  # Given seeds: a finished one is skipped, the new one joins the same group.
  out = _seeds(env, runs, '0,5', '--config.num_steps=7')
  assert out.returncode == 0, out.stdout + out.stderr
  assert f'seed 0: skipped, {runs}/nottingham_f_rnn/seed0/results.json exists' in out.stdout
  assert sorted(_calls(runs)) == [0, 1, 2, 5]
  assert '| F-RNN | -3.42 ± 0.0216 / -3.4 (-0.02, -0.9 sd) n=4 |' in out.stdout.splitlines()

  # One given seed, written with a trailing comma (a lone number is a count).
  out = _seeds(env, runs, '7,', '--config.num_steps=7')
  assert out.returncode == 0, out.stdout + out.stderr
  assert sorted(_calls(runs)) == [0, 1, 2, 5, 7]


def test_failed_seed_is_reported(tmp_path, env):
  runs = tmp_path / 'runs'
  out = _seeds(dict(env, FAIL_SEED='1'), runs, '2')
  assert out.returncode == 1
  assert ('seed 1: failed (exit 2): error: --config.data_dir=/nowhere: no such directory'
          in out.stdout.splitlines())
  assert '| F-RNN | -3.4 / -3.4 (+0) |' in out.stdout.splitlines()  # seed 0 still reported


@pytest.mark.parametrize('args,message', [
    (['configs/nottingham_f_rnn.py', 'runs', '0'],
     "error: N|SEEDS '0': give a count >= 1 or comma-separated seeds"),
    (['configs/nottingham_f_rnn.py', 'runs', '1,x'],
     "error: N|SEEDS '1,x': give a count >= 1 or comma-separated seeds"),
    (['configs/nottingham_f_rnn.py', 'runs', '1234'],
     "error: N=1234 runs? N counts seeds (at most 100); for the one seed 1234 write '1234,'"),
    (['configs/no_such.py:seed=1', 'runs', '2'],
     'error: CONFIG configs/no_such.py: no such file'),
])
def test_bad_arguments(tmp_path, env, args, message):
  args[1] = str(tmp_path / args[1])
  out = subprocess.run(['bash', SCRIPT, *args], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=60)
  assert (out.returncode, out.stderr.strip()) == (2, message)
  assert not (tmp_path / 'runs').exists()
