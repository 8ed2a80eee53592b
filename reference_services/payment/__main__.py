"""Run the payment service: ``python -m reference_services.payment``."""

from reference_services.payment.service import main

raise SystemExit(main())
