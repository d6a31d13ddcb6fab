"""The contract between server and device: programme and manifest types, topics, trust and packs."""
