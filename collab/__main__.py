"""`python -m collab` is the `collab` command."""

from collab.cli import main

if __name__ == "__main__":
    main()
