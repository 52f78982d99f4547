"""Grading policy: model, condition language, compilation to SQL."""
