"""Run the productcatalog service: ``python -m reference_services.productcatalog``."""

from reference_services.productcatalog.service import main

raise SystemExit(main())
