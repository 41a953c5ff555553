"""Runs one allocation; mirrors client/allocrunner."""
