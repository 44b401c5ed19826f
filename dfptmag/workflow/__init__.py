"""Declarative QE workflows: TOML config → ld1.x, pw.x, ph.x runs with δψ capture."""
