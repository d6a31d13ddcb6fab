"""The hardware interface a device exposes, with simulated and Linux implementations."""
