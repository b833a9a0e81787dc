"""Tests of the Hulu-Med runtime (``inference``)."""
