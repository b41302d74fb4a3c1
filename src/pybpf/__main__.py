"""Entry point for ``python -m pybpf``: the same as the ``pybpf`` command."""

from pybpf.cli import main

if __name__ == "__main__":
    main()
