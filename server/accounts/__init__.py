"""Staff accounts: API tokens, passwords, roles, the township scope rule and the audit of who did what."""
