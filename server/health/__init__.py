"""Health of the stack: process heartbeats and the checks /healthz answers with."""
