"""The event ingest: what devices report (over MQTT or on a USB stick), parsed, stored and acknowledged."""
