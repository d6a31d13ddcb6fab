"""Probing, loudness measurement, transcoding and tagging of one media file (ffmpeg and mutagen)."""
