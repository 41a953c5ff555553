"""Artifact download and hardened unpacking; mirrors client/allocrunner/taskrunner/getter."""
