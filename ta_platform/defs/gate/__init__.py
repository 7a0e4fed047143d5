"""The release gate: an asset check that reads every other check's latest evaluation."""
