"""Run the recommendation service: ``python -m reference_services.recommendation``."""

from reference_services.recommendation.service import main

raise SystemExit(main())
