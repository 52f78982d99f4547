"""A correct reference connector and deliberately broken variants, each with one realistic bug."""
