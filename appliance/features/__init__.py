"""Features, defined once in the spec and computed by one implementation for training and serving."""
