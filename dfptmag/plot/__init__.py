"""Matplotlib figures (no computation beyond arranging arrays for display)."""
