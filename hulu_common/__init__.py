"""Small building blocks every layer may use (it imports none of them): atomic file writes and
which files a selection of files and folders means."""
