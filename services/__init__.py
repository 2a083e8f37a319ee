"""The service layer: business rules shared by the HTML pages and the JSON API."""
