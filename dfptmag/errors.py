"""Errors dfptmag raises for bad input: each names the file and what is wrong."""


class DfptmagError(Exception):
    """Base class: a clear, one-line problem report meant for the user."""


class InputFileError(DfptmagError):
    """A file is missing, truncated, inconsistent or outside what dfptmag supports."""

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class UnsupportedError(InputFileError):
    """The file is valid QE output but describes a case dfptmag does not handle."""


class QERunError(DfptmagError):
    """A Quantum ESPRESSO executable failed."""


class ArgumentValueError(DfptmagError, ValueError):
    """A Python API argument has a wrong value (``mode=0``, ``cells='4by4'``): a ValueError
    that is also a DfptmagError, so the command line reports it in one line."""


class ArgumentTypeError(DfptmagError, TypeError):
    """A Python API argument has the wrong kind (``mode=1.5``, ``cells=4``): a TypeError that
    is also a DfptmagError."""
