"""``python -m reference_services.notification``: run the service its ``service.py``
declares; ``... replay-dead-letters [options]``: replay its dead letters (see `replay`)."""

import sys

if sys.argv[1:2] == ["replay-dead-letters"]:
    from .replay import main

    raise SystemExit(main(sys.argv[2:]))

from .service import ENTRY

raise SystemExit(ENTRY.run())
