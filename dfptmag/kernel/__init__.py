"""Pure numerical kernels: arrays in, arrays out; no file access."""
