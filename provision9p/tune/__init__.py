"""Measure and choose 9P mount options on a running guest (`provision9p tune`)."""
