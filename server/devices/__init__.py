"""Devices: the registry of radios and terminals, their enrolment codes, enrolment and revocation."""
