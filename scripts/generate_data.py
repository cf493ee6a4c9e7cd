"""Generate stand-in data files; see `python scripts/generate_data.py --help`."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from shared.data.generate import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
