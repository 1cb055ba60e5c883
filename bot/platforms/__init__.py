"""Platform plugins: the adapter contract (base.py), the registry, and one folder per platform."""
