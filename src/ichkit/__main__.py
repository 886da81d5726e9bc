"""``python -m ichkit``: the same as the ``ichkit`` command."""

import sys

from ichkit.cli import main

sys.exit(main())
