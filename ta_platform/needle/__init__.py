"""Needle token probes (seed 003): a needle dataset, token labels, a token probe and a document monitor.

Plain Python (no Dagster): ``dataset`` builds or reads the documents, ``families`` says what a needle
is, ``labels`` turns character spans into token labels on the exact string fed to the model,
``probe`` fits the token probe and its baselines, ``monitor`` turns token logits into document
scores, ``tripwires`` are the checks that plant-able faults trip. See docs/needle.md.
"""
