"""The one base class for errors a user can fix (bad input, bad config, a refused operation).

The CLI dispatchers (`cvil`, `cvil-bench`) catch ``CvilError`` once and print it as one line on stderr with exit
code 2, so library code raises with a precise message (file, row/key, what was expected) and never prints, calls
``sys.exit`` or formats tracebacks itself. Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class CvilError(Exception):
    """A user-facing error: its message is the whole report (one line: ``where: what was expected, got what``)."""


class ConfigError(CvilError, ValueError):
    """A configuration problem found before any training starts (also importable as `cvil.config.ConfigError`)."""


class UsageError(CvilError, ValueError):
    """A command was asked for something it cannot do (unknown name, bad option value, refused overwrite)."""


class OutputExistsError(UsageError, FileExistsError):
    """A command refused to overwrite an existing folder or file (pass its `--force`, or choose another path)."""


class StopTrial(Exception):
    """Raised by a training run's `on_eval` callback to stop the run early on purpose (a search prunes a trial).

    Not a user error: `cvil.train.api.run` closes the tracked run as KILLED and re-raises it to the caller (the
    search turns it into its optimiser's own prune signal)."""
