"""`speedy bench`: artifacts side by side on the same data, each measured in its own process."""
