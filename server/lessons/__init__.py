"""Lessons: uploads (multipart and tus), their source files, renditions, storage and transcoding."""
