"""Training of assist's models (offline; never imported by the service at run time).

The names below are loaded lazily so that ``python -m assist.training.classifiers`` does not
import the module twice (runpy warns when the package has already imported it).
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_utterances", "merge_utterances", "train_classifiers"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from assist.training import classifiers

        return getattr(classifiers, name)
    raise AttributeError(f"module 'assist.training' has no attribute {name!r}")
