"""References a build is verified against, behind one interface."""
