"""A held-out family of seeded bugs, written against the plugin guide's HubSpot-like connector (another API shape
than the one the kit's broken connectors use), to measure how much of what authors get wrong the kit catches."""
