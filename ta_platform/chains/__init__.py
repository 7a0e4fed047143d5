"""Annotated reasoning chains (backtracking study, seed 002): parsing of the inline tags, alignment of
the annotated text to ``reasoning_chain``, token labels from offsets, the lag convention, lag probes
and their baselines, tripwires, and the embedded generator. No Dagster import here.

The lag convention, written once (``lags.py``): the probe reads the activation at token ``t`` and
predicts the label at token ``t + k``; ``k > 0`` is the future (predicting ahead), ``k < 0`` the past.
"""
