"""Readers of the real data formats, the feature store and the embedded data set."""
