"""chorus-gateway: EDI batch-flow gateway from ERP exports to Chorus Pro.

The package is organised by pipeline stage (intake, mapping, validation, packaging,
transport, sandbox, reports, store); ``gateway.pipeline`` is where they meet.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
