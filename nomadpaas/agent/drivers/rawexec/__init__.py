"""The raw_exec driver: tasks as host processes in their own process group; drivers/rawexec."""
