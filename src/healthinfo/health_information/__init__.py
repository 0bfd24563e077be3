"""The domain: a kit's health information, its versions, and the rules for changing it."""
