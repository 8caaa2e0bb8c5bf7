"""Pure business rules: values in, values out, no I/O."""
