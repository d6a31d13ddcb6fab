"""Tests of the firmware stub: simulated hardware on a manual clock, Linux adapters on real files and players."""
