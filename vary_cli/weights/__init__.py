"""Where weights come from: the `weights.toml` registry, hub downloads with hash checks, and the choice
of device and dtype.
"""
