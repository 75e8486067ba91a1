//! Conformance suites, generic over the adapter traits (filled in with the adapters).
