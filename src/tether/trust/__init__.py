"""Trust rings: risk categories, policies, approvals with context, and evidence."""
