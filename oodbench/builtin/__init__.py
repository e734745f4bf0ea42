"""Default plugins built into the core, registered by module path like pytest's own."""
