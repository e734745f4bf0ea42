"""What each kind of plugin object must have, checked when it registers (without importing torch).

A plugin that misses its contract is refused at registration with one line
naming what is missing, instead of failing later with an AttributeError in
the middle of planning or training.
"""

from __future__ import annotations

import sys
from typing import Any

DATASET_ATTRIBUTES = {"num_classes": int, "attribute": str, "attribute_values": (tuple, list)}
TARGET_ATTRIBUTES = {"defaults": dict}
METHODS = {"datasets": ("build",), "targets": ("supports", "deploy"), "algorithms": ("needs", "update", "predict"),
           "backbones": ()}


def problem(kind: str, obj: Any) -> str | None:
    """Why ``obj`` cannot be registered as a ``kind``, or None when it meets the contract."""
    if kind == "algorithms":
        api = sys.modules.get("oodbench.api")  # an Algorithm subclass exists only if its module imported the api
        if not (isinstance(obj, type) and api is not None and issubclass(obj, api.Algorithm)):
            return "is not a subclass of oodbench.api.Algorithm (subclass it, or SingleModel for one network)"
    if kind in ("algorithms", "backbones", "targets") and not isinstance(obj, type):
        return f"must be a class (the runner instantiates it), got {type(obj).__name__}"
    missing = [name for name in METHODS[kind] if not callable(getattr(obj, name, None))]
    if missing:
        return f"lacks the method(s) {', '.join(missing)}"
    attributes = {"datasets": DATASET_ATTRIBUTES, "targets": TARGET_ATTRIBUTES}.get(kind, {})
    for name, expected in attributes.items():
        value = getattr(obj, name, None)
        if not isinstance(value, expected) or isinstance(value, bool):
            wanted = " or ".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
            return f"lacks the attribute {name} ({wanted}; got {value!r})"
    return None
