"""The program that runs on each radio and terminal."""
