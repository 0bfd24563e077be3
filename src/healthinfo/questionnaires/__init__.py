"""Questionnaire definitions shipped as data, and validation of answers against them."""
