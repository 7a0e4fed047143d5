"""What more than one domain of ``defs/`` uses: the model-layer partitions and where activations live.

Why one module: sentence activations, prompt activations (preferences) and the probes all key their
work by the same model x layer partitions and read the same activations folder. Domains import these
from here, never from each other's folders, so no domain depends on another's wiring. Resources and
the GPU pool are in ``defs/resources.py`` and ``defs/compute.py``, also shared by every domain.
"""

from __future__ import annotations

from ta_platform.defs.activations.partitions import model_layer_partitions, requested_layers
from ta_platform.defs.aggregates.sql_assets import build_sql_assets
from ta_platform.defs.gate.checks import GATED_ASSET, current_gate_verdict
from ta_platform.store.artifacts import activations_root

# The gate's reader is shared: the scaling summary states the verdict so far, the gate the final one.
# Studies build their SQL models with the aggregates' builder.
__all__ = ["GATED_ASSET", "activation_partitions", "activations_root", "build_sql_assets", "current_gate_verdict",
           "requested_layers"]

# One partitions object for every model x layer asset (sentence and prompt activations).
activation_partitions = model_layer_partitions()

