"""Training records the organisation department files: study hours (学时) against yearly quotas per role, site
logbooks (四簿一册), make-up lessons (补课) pushed to absent members' radios, and certificates (培训证书) with a
public verification code. The rules, in words, are in docs/ATTENDANCE.md."""
