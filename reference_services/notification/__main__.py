"""``python -m reference_services.<service>``: run the service its ``service.py`` declares."""

from .service import ENTRY

raise SystemExit(ENTRY.run())
