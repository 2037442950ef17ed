"""Sync: bring channels from mirrors, LAN peers and USB drives into the box."""
