"""gsenet: train and search the Guided Speech Enhancement Network (GSENet) at scale."""

__version__ = "0.1.0"
