"""Readers for Quantum ESPRESSO 6.7 files: one module per file kind.

Readers return plain numpy arrays or small dataclasses and never do physics.
Every error they raise names the file and the problem (dfptmag.errors.InputFileError).
"""
from __future__ import annotations

import functools
import struct
import xml.etree.ElementTree as ET

from ..errors import DfptmagError, InputFileError

# What a reader meets in a file that is not what it claims to be (zeroed, random bytes, another
# format, cut short): turned into one line naming the file instead of a traceback.
MALFORMED = (ValueError, IndexError, KeyError, TypeError, AttributeError, UnicodeDecodeError,
             struct.error, EOFError, OverflowError, ET.ParseError, ZeroDivisionError)


def reader(kind: str):
    """Decorator for ``read_*(path, ...)``: malformed content raises InputFileError(path, ...)."""
    def deco(fn):
        @functools.wraps(fn)
        def wrapped(path, *args, **kwargs):
            try:
                return fn(path, *args, **kwargs)
            except DfptmagError:
                raise
            except MemoryError:
                raise InputFileError(path, f"not a valid {kind}: sizes in it ask for more memory than "
                                           "there is (corrupted header?)") from None
            except MALFORMED as exc:
                detail = str(exc).splitlines()[0] if str(exc) else ""
                raise InputFileError(path, f"not a valid {kind} ({type(exc).__name__}: {detail[:160]})") from None
        return wrapped
    return deco
