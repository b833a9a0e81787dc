"""Workstation services without Qt: settings, the listener process, import, anonymisation, logging."""
