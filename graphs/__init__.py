"""graphs: network topologies (networkx), the kernel-map walker, and torch.fx tracing.

Never imports ``analysis`` or ``numeric``; torch is imported only inside :func:`from_torch`.
"""

from .graph import (KINDS, WEIGHT_TOLERANCE, NodeKind, PropagationContext, activation_nodes, add_concat,
                    add_node, add_weighted_sum, edge_channels, edge_weights, input_node, new_graph,
                    normalised_weights, output_node, register_kind, validate)
from .builders import mlp, multi_branch, resnet, residual_weights
from .walker import (DEFAULT_SAMPLE_VALUES, SubnetworkMaximum, max_subnetwork, max_subnetwork_value,
                     network_c_map, propagate, subnetwork_value)
from .fx import from_torch

__all__ = [
    "KINDS", "WEIGHT_TOLERANCE", "NodeKind", "PropagationContext", "activation_nodes", "add_concat",
    "add_node", "add_weighted_sum", "edge_channels", "edge_weights", "input_node", "new_graph",
    "normalised_weights", "output_node", "register_kind", "validate",
    "mlp", "multi_branch", "resnet", "residual_weights",
    "DEFAULT_SAMPLE_VALUES", "SubnetworkMaximum", "max_subnetwork", "max_subnetwork_value",
    "network_c_map", "propagate", "subnetwork_value",
    "from_torch",
]
