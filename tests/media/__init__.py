"""Tests of the media package, with real ffmpeg on small generated media."""
