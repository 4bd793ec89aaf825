"""Evaluation across runs: the experiment of the paper's Table 1 and its report."""
