"""First-party oodbench algorithms; each module is its own entry point and imports only oodbench.api."""
