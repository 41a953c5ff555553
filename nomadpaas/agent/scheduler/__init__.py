"""Schedulers and the pure reconciler; mirrors scheduler/."""
