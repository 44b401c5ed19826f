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
