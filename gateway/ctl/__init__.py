"""gatewayctl: the admin and operator command line (talks to a running gateway over its upstream socket)."""
