"""Memristive hardware targets for oodbench, simulated with memtorch (GPL-3.0, installed separately).

``memristor`` converts a trained network to 1T1R crossbars of VTEAM devices
read through ADCs; ``memristor_faults``, ``memristor_aging`` and
``memristor_states`` add stuck devices, endurance and retention, and a finite
number of conductance states. memtorch is imported only when a network is
deployed, so listing plugins stays fast and works without it.
"""
