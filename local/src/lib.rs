//! Placeholder until its issue lands: local stand-ins for AWS and the backends.
