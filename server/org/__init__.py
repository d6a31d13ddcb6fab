"""The organisation: townships, sites, groups and members, their CSV imports and members' cards."""
