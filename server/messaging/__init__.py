"""MQTT: the broker lessoncast runs, its subscription gate, the server's client and retained messages."""
