"""Agent releases and their staged rollouts: the device agent updating itself through the signed channel."""
