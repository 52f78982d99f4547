"""The conformance kit for connector plugins."""
