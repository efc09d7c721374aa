"""Official checkpoint converters."""
