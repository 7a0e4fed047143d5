"""Activations partitioned by model x layer, extracted on the compute resource."""
