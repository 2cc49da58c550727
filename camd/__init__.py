"""camd: a home-camera identity daemon (who is it?) publishing to MQTT / Home Assistant."""

__version__ = "0.1.0"
