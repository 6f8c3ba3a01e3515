"""``python -m sklearn_distill`` runs the main job (see :mod:`sklearn_distill.cli`)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
