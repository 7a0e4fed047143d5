"""Preference study: task pool, prompt activations, pairwise preferences, utilities and utility probes."""
