"""assist: real-time agent assist for Chinese e-commerce customer service."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
