"""AdService: text ads matched to the page's context keys."""
