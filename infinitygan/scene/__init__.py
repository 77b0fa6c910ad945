"""Steering the infinite canvas (paper Section 4.3): spatial style fusion, cyclic panoramas and
regional resampling, described by one ``Scene``."""
