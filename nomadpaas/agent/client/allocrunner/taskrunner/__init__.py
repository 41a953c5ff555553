"""Runs one task through its lifecycle; mirrors client/allocrunner/taskrunner."""
