"""The ways a run ends other than success, each with its exit code.

The command line (`reexam_jax.main`) prints the message of any of these as one line on
stderr and exits with `exit_code`; library callers catch them like any exception.
"""


def first_line(error: BaseException) -> str:
  """The first line of error's message, or its type's name when it has none: how an
  error from a library (JAX, another process) is quoted in one of our one-line errors."""
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__


class UserError(Exception):
  """Bad input: a flag, config field, file or directory that cannot be used. The
  message names it. Raised before anything is written."""
  exit_code = 2


class TrainingDiverged(Exception):
  """A non-finite loss or gradient stopped training; the last good checkpoint stays."""
  exit_code = 3


class TrainingInterrupted(Exception):
  """SIGTERM or SIGINT stopped training after a checkpoint; the same command resumes."""

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.exit_code = 128 + signum  # the shell's convention for a signalled process
