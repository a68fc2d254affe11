"""Aggregation: the flag policy, reward shaping, healing, the weighted mean and the one route writer."""
