"""Task drivers; mirrors plugins/drivers and drivers/."""
