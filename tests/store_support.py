"""Hand-made store contents shared by the tests that render reports without training."""

SPLITS = [
    {"name": "train1", "env": "train1", "role": "train", "part": "main"},
    {"name": "train1/val", "env": "train1", "role": "train", "part": "val"},
    {"name": "train1/idtest", "env": "train1", "role": "train", "part": "idtest"},
    {"name": "test", "env": "test", "role": "test", "part": "main"},
    {"name": "test/holdout", "env": "test", "role": "test", "part": "holdout"},
]
"""One train environment (main, validation and ID-test parts) and one test environment (main and held-out)."""

VERSIONS = {"dataset": ("colored_mnist", "oodbench", "0.1.0"), "algorithm": ("erm", "oodbench", "0.1.0")}
"""The plugin versions recorded with every hand-made cell."""
