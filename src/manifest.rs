//! Reading and validating the CSV manifest.
