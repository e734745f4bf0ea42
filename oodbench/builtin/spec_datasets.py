"""Every dataset spec file as a default dataset plugin (``datasets_spec/`` and ``OODBENCH_DATASETS_PATH``)."""

import sys

from oodbench import hookimpl
from oodbench.data.catalog import load_catalog


@hookimpl
def oodbench_register_datasets(register):
    catalog = load_catalog()
    for warning in catalog.warnings:
        print(f"oodbench: warning: {warning}", file=sys.stderr)
    for dataset in catalog.datasets:
        register(dataset)
