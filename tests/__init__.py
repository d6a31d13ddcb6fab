"""lessoncast tests; a package so shared helpers import as tests.<package>.<module>."""
