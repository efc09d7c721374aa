"""The query-based detection family (boxes + masks + sigmoid prompt classification); see
:mod:`.contracts` for the shapes its parts exchange."""
