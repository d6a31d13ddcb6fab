"""Tests of the playlists package: pure functions over plain data, tables of cases, no mocks."""
