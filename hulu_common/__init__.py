"""Small building blocks every layer may use (it imports none of them): atomic file writes."""
