"""Task log capture and rotation; mirrors client/logmon."""
