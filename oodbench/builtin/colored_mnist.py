"""The seed report's ColoredMNIST as a default dataset plugin."""

from oodbench import hookimpl
from oodbench.data.colored_mnist import ColoredMNIST


@hookimpl
def oodbench_register_datasets(register):
    register(ColoredMNIST())
