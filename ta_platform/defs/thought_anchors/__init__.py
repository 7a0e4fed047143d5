"""Thought-anchor data assets (problem index, labels, spans) and their invariant checks."""
