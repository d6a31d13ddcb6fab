"""Programmes, their publishing to devices' channels, and the county's TUF signing repository."""
