"""Data parallelism with one jit: a 1-D ('data',) mesh over all devices of all
processes, parameters replicated, batches sharded along their batch axis. The same code
runs on one CPU, several GPUs, several processes or a multi-host TPU pod; a
multi-process run calls `initialize()` first.

Every process builds only its own block of each global batch's rows (`local_rows`) from
the same deterministic data pipeline, and the blocks are assembled into one global
array (`put_batch`), so a run's numbers do not depend on how many processes or devices
share it."""
import itertools
import os
import socket
from typing import Callable, Optional, Tuple, TypeVar

import jax
import numpy as np
from jax._src import distributed as jax_distributed  # the coordination client; no public path
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from reexam_jax import errors

# Variables of the cluster launchers that jax.distributed.initialize() auto-detects.
CLUSTER_VARIABLES = ('JAX_COORDINATOR_ADDRESS', 'SLURM_JOB_ID', 'TPU_WORKER_HOSTNAMES')
PROCESS_FLAGS = ('--coordinator_address', '--num_processes', '--process_id')

T = TypeVar('T')


def check_process_flags(coordinator_address: Optional[str], num_processes: Optional[int],
                        process_id: Optional[int]) -> None:
  """UserError unless the three flags are all given (HOST:PORT, N >= 1, 0 <= I < N) or
  all absent."""
  given = [v is not None for v in (coordinator_address, num_processes, process_id)]
  if not any(given):
    return
  if not all(given):
    missing = [f for f, g in zip(PROCESS_FLAGS, given) if not g]
    raise errors.UserError(f'{", ".join(missing)}: required with '
                           f'{", ".join(f for f, g in zip(PROCESS_FLAGS, given) if g)} '
                           '(a multi-process run needs all three)')
  host, _, port = coordinator_address.rpartition(':')
  if not host or not port.isdigit():
    raise errors.UserError(f'--coordinator_address={coordinator_address}: expected HOST:PORT')
  if num_processes < 1:
    raise errors.UserError(f'--num_processes={num_processes}: must be >= 1')
  if not 0 <= process_id < num_processes:
    raise errors.UserError(f'--process_id={process_id}: must be in [0, {num_processes})')


def check_port_free(coordinator_address: str) -> None:
  """UserError when process 0 cannot listen on the coordinator's port: JAX (0.10) then
  sometimes crashes (a segmentation fault) instead of raising."""
  port = int(coordinator_address.rpartition(':')[2])
  with socket.socket() as s:
    try:
      s.bind(('', port))
    except OSError as e:
      raise errors.UserError(f'--coordinator_address={coordinator_address}: process 0 '
                             f'cannot listen on port {port}: {e.strerror}') from e


def initialize(coordinator_address: Optional[str] = None,
               num_processes: Optional[int] = None,
               process_id: Optional[int] = None) -> None:
  """Starts multi-process JAX: with the given coordinator, process count and id; without
  them, when a cluster launcher set its variables (CLUSTER_VARIABLES; JAX reads the
  rest from them); else does nothing (one process). Cross-process collectives on CPUs
  use gloo. Must run before anything touches JAX's backend (jax.devices(), an array).

  Raises errors.UserError, one line, when the flags are inconsistent or the start
  fails: a run never silently falls back to one process."""
  check_process_flags(coordinator_address, num_processes, process_id)
  if coordinator_address is None and not any(k in os.environ for k in CLUSTER_VARIABLES):
    return
  if process_id == 0:
    check_port_free(coordinator_address)
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  try:
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
  except Exception as e:  # pylint: disable=broad-except; JAX raises several kinds
    where = (f'--coordinator_address={coordinator_address}' if coordinator_address
             else 'cluster auto-detection')
    reason = errors.first_line(e)
    raise errors.UserError(f'{where}: multi-process start failed: {reason}') from e


def make_mesh() -> Mesh:
  """All devices of all processes on one 'data' axis, ordered by process, so each
  process's devices hold one contiguous block of a batch's rows."""
  devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
  return Mesh(np.array(devices), ('data',))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, batch_axis: int = 1) -> NamedSharding:
  """Sharding of a time-major [T, B, ...] array over B."""
  spec = [None] * (batch_axis + 1)
  spec[batch_axis] = 'data'
  return NamedSharding(mesh, P(*spec))


def check_batch_size(batch_size: int, mesh: Mesh, flag: str = '--config.batch_size') -> None:
  """UserError unless batch_size divides over the mesh's devices: the global batch is
  the config's (the paper's) at any scale, never rounded."""
  n = mesh.devices.size
  if batch_size % n:
    raise errors.UserError(f'{flag}={batch_size} is not divisible by the {n} devices of '
                           f'the mesh ({jax.process_count()} process(es))')


def local_rows(batch_size: int) -> Tuple[int, int]:
  """This process's block [lo, hi) of a global batch's rows: [i * B/N, (i+1) * B/N) for
  process i of N (the mesh orders devices by process, so these rows land on its own
  devices)."""
  rows = batch_size // jax.process_count()
  return jax.process_index() * rows, (jax.process_index() + 1) * rows


def put_batch(local: np.ndarray, mesh: Mesh, batch_size: int,
              batch_axis: int = 1) -> jax.Array:
  """This process's rows `local` (e.g. [T, B/N, D], the block `local_rows(batch_size)`)
  as its part of one global [T, batch_size, D] jax.Array sharded over the mesh."""
  shape = list(local.shape)
  shape[batch_axis] = batch_size
  return jax.make_array_from_process_local_data(
      batch_sharding(mesh, batch_axis), local, tuple(shape))


# How long the other processes wait for process 0 to prepare a data set (a speech corpus
# takes minutes to hours on first use).
DATA_BARRIER_TIMEOUT_S = 6 * 3600
_barriers = itertools.count()  # barrier ids must not repeat within a run


def coordination_client():
  """The client of JAX's coordination service (started by jax.distributed.initialize;
  Orbax's barriers use the same one): barriers with a timeout of our choosing and a
  key-value store, independent of the collectives' (gloo's) 30 s deadlines."""
  return jax_distributed.global_state.client


def barrier(name: str, error: Optional[BaseException] = None,
            timeout_s: int = DATA_BARRIER_TIMEOUT_S) -> None:
  """Every process waits here; then all raise if any of them arrived with an `error`
  (that process re-raises its own, the others a UserError naming it), so a failure on
  one process stops every process at once with its one-line reason."""
  client = coordination_client()
  key = f'reexam_jax/{name}/{next(_barriers)}'
  if error is not None:
    client.key_value_set(f'{key}/error/{jax.process_index()}', errors.first_line(error))
  client.wait_at_barrier(key, timeout_s * 1000)
  if error is not None:
    raise error
  reports = sorted(client.key_value_dir_get(f'{key}/error/'))
  if reports:
    where, reason = reports[0]
    raise errors.UserError(f'process {where.rpartition("/")[2]} stopped the run: {reason}')


def first_process_first(fn: Callable[[], T]) -> T:
  """fn() on process 0, then, after a barrier, on the others: files that fn prepares
  (a data set built on first use) are written once, and the others read them. A second
  barrier lets all processes go on together. If fn fails on any process, every process
  stops at the next barrier with that failure's one-line reason (`barrier`)."""
  if jax.process_count() == 1:
    return fn()

  def attempt():
    try:
      return fn(), None
    except Exception as e:  # pylint: disable=broad-except; reported to every process
      return None, e

  out, error = attempt() if jax.process_index() == 0 else (None, None)
  barrier('data_prepared', error)
  if jax.process_index() != 0:
    out, error = attempt()
  barrier('data_loaded', error)
  return out


def max_over_processes(value: int) -> int:
  """The largest of every process's `value` (a collective: every process calls it), so
  that all take the same decision, e.g. to stop after this step."""
  if jax.process_count() == 1:
    return value
  return int(multihost_utils.process_allgather(np.int32(value)).max())


def is_main_process() -> bool:
  """True on the process that writes run files (metrics, results, samples, reports)."""
  return jax.process_index() == 0
