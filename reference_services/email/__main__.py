"""Run the email service: ``python -m reference_services.email``."""

from reference_services.email.service import main

raise SystemExit(main())
