"""Run the cart service: ``python -m reference_services.cart``."""

from reference_services.cart.service import main

raise SystemExit(main())
