"""User-facing error types: the CLI and the app print these as one clear line, never a traceback."""


class DeepzError(Exception):
    """Base class for errors caused by user input (files, arguments, configuration)."""


class CatalogError(DeepzError, ValueError):
    """A catalogue file is unreadable or breaks the canonical format; the message names file and column."""


class ConfigError(DeepzError, ValueError):
    """A configuration value is unknown or out of range; the message names the field and echoes the value."""


class OutputExistsError(ConfigError):
    """An output a command would write exists and was not asked to be replaced (``--overwrite``,
    ``overwrite=True``); the message names the option and the path."""


class TrainingError(DeepzError, RuntimeError):
    """Training went wrong (a non-finite loss or weight, a diverging held-out loss); the message
    names the phase, the epoch and, where the data are the cause, the galaxies and bands."""


class TrainingWarning(UserWarning):
    """A run finished but its networks deserve doubt (they predict no better than the spec-z
    distribution alone, or ended well above their best epoch); the message says which members
    and what to try. ``dz.train`` and ``Run.resume`` warn with it; the CLI prints it on stderr."""


class InUseError(DeepzError, RuntimeError):
    """Another process is writing the folder a command wants to write (a run folder, a dataset
    folder); the message names the folder and that process."""


class Terminated(BaseException):
    """The process received SIGTERM: raised in the main thread so that a run records a clean
    status and locks are released on the way out. A BaseException, like KeyboardInterrupt, so
    that no ``except Exception`` swallows it."""
