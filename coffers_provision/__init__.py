"""coffers-provision: NUMA-aware provisioning for llama.cpp inference fleets."""

__version__ = "0.1.0"
