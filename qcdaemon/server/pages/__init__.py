"""The web pages (sign-in, home, trends): HTML for people, served beside the JSON API."""
