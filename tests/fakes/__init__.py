"""Default handlers that make an Upstream speak one provider's wire format."""
