"""Runs inside the build task: fetch source, run buildpacks, pack and upload the slug."""
