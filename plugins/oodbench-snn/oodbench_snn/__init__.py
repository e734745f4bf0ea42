"""First-party spiking backbones for oodbench, built on snntorch; each registering module is an entry point."""
