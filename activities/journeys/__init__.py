"""Journey activities: consume triggers, advance due contacts in batches, send through channels."""
