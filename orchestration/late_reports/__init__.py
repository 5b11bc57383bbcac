"""Late reports: the backfill job and the landing-folder sensor that runs it."""
