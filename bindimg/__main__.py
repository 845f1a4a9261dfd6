"""`python -m bindimg`."""

from bindimg.cli import main

main()
