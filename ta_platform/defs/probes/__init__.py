"""Probes partitioned by seed, tripwires as asset checks, the scaling summary and the release gate."""
