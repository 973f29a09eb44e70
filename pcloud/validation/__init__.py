"""Validation of pcloud's fast simulation against Geant4: reference cards and real files (``pcloud validate``)."""
