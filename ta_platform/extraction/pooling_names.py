"""Names of the pooling modes, torch-free so configs can validate them without importing torch."""

POOLINGS = ("mean", "last")
