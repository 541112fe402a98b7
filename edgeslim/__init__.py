"""edgeslim: make self-supervised encoders small, bundle them per device, prove each bundle
against its budget.

This module stays light: `edgeslim.runtime` is imported on devices that have no torch.
"""

__version__ = "0.1.0"
