"""Run the currency service: ``python -m reference_services.currency``."""

from reference_services.currency.service import main

raise SystemExit(main())
