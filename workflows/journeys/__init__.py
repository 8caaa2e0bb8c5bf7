"""Journey workflows: one JourneyWorkflow per journey."""
