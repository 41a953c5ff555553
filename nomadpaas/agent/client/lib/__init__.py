"""Client helpers shared by endpoints; mirrors client/lib."""
