"""`python -m emim ...` is the same as the `emim` console command (torchrun uses this form)."""

from emim.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
