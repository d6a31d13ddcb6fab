"""Training records the organisation department files: study hours (学时) against yearly quotas per role,
certificates (培训证书) with a public verification code."""
