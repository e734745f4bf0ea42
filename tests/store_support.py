"""Hand-made store contents shared by the tests that render reports without training."""

SPLITS = [
    {"name": "train1", "env": "train1", "role": "train", "part": "main"},
    {"name": "train1/holdout", "env": "train1", "role": "train", "part": "holdout"},
    {"name": "test", "env": "test", "role": "test", "part": "main"},
    {"name": "test/holdout", "env": "test", "role": "test", "part": "holdout"},
]
"""One train and one test environment, each with its main part and held-out part."""

VERSIONS = {"dataset": ("colored_mnist", "oodbench", "0.1.0"), "algorithm": ("erm", "oodbench", "0.1.0")}
"""The plugin versions recorded with every hand-made cell."""
