"""Model quality in production: realised and label-free (CBPE) performance per window, late labels."""
