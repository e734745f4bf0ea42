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


def one_finished_cell(run_dir):
    """A run directory whose store holds one done cell with its plugin version and no training: enough for the
    reading commands to take their full import paths."""
    from oodbench.store import Store

    run_dir.mkdir(parents=True, exist_ok=True)
    with Store.in_dir(run_dir) as store:
        store.db.execute("INSERT INTO cells (key, training, dataset, backbone, algorithm, target, seed, config, "
                         "variant, hparams, status, updated_at) VALUES ('c', 't', 'colored_mnist', 'mlp', 'erm', "
                         "'float', 0, 0, '{}', '{}', 'done', 0)")
        store.db.execute("INSERT INTO plugins VALUES ('c', 'algorithm', 'erm', 'oodbench', '0.1.0')")
        store.db.commit()
    return run_dir
