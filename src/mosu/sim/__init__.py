"""The discrete-event simulator and experiments around the same engine."""
