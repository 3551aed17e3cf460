"""`vary eval`: the paper's metrics computed the way each benchmark computes them, benchmark readers,
HTML reports, and running a model on a benchmark (metrics -> protocols -> readers -> score -> report; run).
"""
