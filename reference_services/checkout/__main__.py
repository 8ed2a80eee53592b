"""Run the checkout service: ``python -m reference_services.checkout``."""

from reference_services.checkout.service import main

raise SystemExit(main())
