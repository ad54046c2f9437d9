"""Test doubles of the suite's own: a fake model server the real agent CLIs can talk to."""
