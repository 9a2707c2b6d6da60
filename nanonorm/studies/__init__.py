"""The source documents' experiments: one function per study returning its numbers."""
