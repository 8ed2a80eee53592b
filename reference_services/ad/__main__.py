"""Run the ad service: ``python -m reference_services.ad``."""

from reference_services.ad.service import main

raise SystemExit(main())
