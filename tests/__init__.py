"""bindimg tests; helpers: tests.ociimage (OCI layouts), tests.registry (registry container)."""
