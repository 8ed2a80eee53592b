"""Run the shipping service: ``python -m reference_services.shipping``."""

from reference_services.shipping.service import main

raise SystemExit(main())
