"""`python -m nomadpaas` runs the CLI."""

from nomadpaas.cli import main

if __name__ == "__main__":
    main()
