"""Readers for Quantum ESPRESSO 6.7 files: one module per file kind.

Readers return plain numpy arrays or small dataclasses and never do physics.
Every error they raise names the file and the problem (dfptmag.errors.InputFileError).
"""
