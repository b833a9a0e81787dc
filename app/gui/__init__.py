"""Every Qt widget of the app; they observe the Qt-free models in the sibling packages."""
